package witness

import "github.com/cairnlog/cairn/format/addcheckpoint"

// MaxProofHashes is the most consistency-proof lines a request may carry (tlog-witness).
const MaxProofHashes = addcheckpoint.MaxProofHashes

// AddCheckpointRequest is a parsed POST /add-checkpoint body.
type AddCheckpointRequest = addcheckpoint.Request

// ParseAddCheckpoint parses a tlog-witness add-checkpoint body (see
// addcheckpoint.Parse). Errors wrap ErrMalformed and say what is wrong.
func ParseAddCheckpoint(body []byte) (AddCheckpointRequest, error) {
	return addcheckpoint.Parse(body)
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
