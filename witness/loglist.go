package witness

import "github.com/cairnlog/cairn/format/loglist"

// LogListHeader is the first line of a witness-network log list.
const LogListHeader = loglist.Header

// ErrLogList is wrapped by every log-list parsing error.
var ErrLogList = loglist.ErrLogList

// Log is one log a witness cosigns for.
type Log = loglist.Log

// ParseLogList parses the witness network's log-list format (see loglist.Parse).
func ParseLogList(b []byte) ([]Log, error) { return loglist.Parse(b) }
