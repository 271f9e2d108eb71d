package fence_test

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/rafting/rafting/sdk/fence"
)

// setState writes one row under the master's token: the condition and the
// write are one statement, so the database is the fence. Rows are created
// with fencing_token 0.
func setState(ctx context.Context, db *sql.DB, token uint64, job int64, state string) error {
	if err := fence.Check(0, token); err != nil {
		return err // 0 is no token, and fencing_token <= 0 would admit it
	}
	res, err := db.ExecContext(ctx,
		`UPDATE jobs SET state = $1, fencing_token = $2 WHERE id = $3 AND fencing_token <= $2`,
		state, int64(token), job)
	if err != nil {
		return fmt.Errorf("job %d: %w", job, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("job %d: %w", job, err)
	} else if n == 0 {
		// A newer master wrote the row (or there is no such row).
		return fmt.Errorf("job %d: %w", job, fence.ErrStaleToken)
	}
	return nil
}

// settle fences a write that spans tables through one row of a "fence"
// table, updated first in the transaction: its row lock, held until
// COMMIT, makes a newer master's transaction wait, and a stale master's
// UPDATE matches no row.
func settle(ctx context.Context, db *sql.DB, token uint64, invoice int64) error {
	if err := fence.Check(0, token); err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // after Commit, a no-op
	res, err := tx.ExecContext(ctx,
		`UPDATE fence SET token = $1 WHERE name = $2 AND token <= $1`, int64(token), "billing")
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("settle invoice %d: %w", invoice, fence.ErrStaleToken)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE invoices SET state = 'settled' WHERE id = $1`, invoice); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ledger (invoice, fencing_token) VALUES ($1, $2)`, invoice, int64(token)); err != nil {
		return err
	}
	return tx.Commit()
}

// The SQL recipe of the package documentation, with database/sql and
// Postgres placeholders. A master calls these with its term's token and
// context:
//
//	if t, ok := m.Mastership(); ok {
//		err := settle(t.Ctx, db, t.Token, 42)
//		if errors.Is(err, fence.ErrStaleToken) { /* a newer master exists: stop */ }
//	}
func Example_sql() {
	_, _ = setState, settle
}
