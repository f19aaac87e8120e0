package store

import (
	"context"

	"github.com/airlock-dev/airlock/runtime/audit"
)

// verifyPage is how many records Verify reads per AuditRecords call.
const verifyPage = 1000

// Verify reads the whole audit chain of s in pages and checks it with
// audit.Verify. A read error (including ctx ending) stops verification and
// is reported as an audit.ProblemUnreadable problem, so the report is never
// OK unless the whole chain was read and holds.
func Verify(ctx context.Context, s Store) audit.Report {
	var (
		page  []Record
		i     int
		after int64
		done  bool
	)
	return audit.Verify(func() (Record, bool, error) {
		if i == len(page) {
			if done {
				return Record{}, false, nil
			}
			if err := ctx.Err(); err != nil {
				return Record{}, false, err
			}
			var err error
			page, err = s.AuditRecords(ctx, after, verifyPage)
			if err != nil {
				return Record{}, false, err
			}
			i = 0
			if len(page) < verifyPage {
				done = true
			}
			if len(page) == 0 {
				return Record{}, false, nil
			}
		}
		r := page[i]
		i++
		after = r.Seq
		return r, true, nil
	})
}
