package cairnv1

// RetryHeader marks a request as the retry of one that may already have been
// sequenced by another frontend: a gRPC metadata key and an HTTP header
// (Cairn-Retry). The client sets it on every attempt after the first; the log
// then waits for its antispam index to cover everything sequenced before it
// looks the record up, so the retry gets the first attempt's index.
const RetryHeader = "cairn-retry"
