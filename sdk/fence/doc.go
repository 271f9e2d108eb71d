// Package fence is the resource side of Rafting's fencing tokens: what a
// store, a file or a service that a master writes to uses to refuse the
// writes of a master that has been replaced.
//
// Every mastership granted by Rafting carries a fencing token, a uint64 that
// grows with every new term of a service (sdk.Term.Token; see DESIGN.md).
// A master sends its token with every write, and the resource applies one
// rule: admit a token only if it is at least the highest it has seen, and
// remember the highest. A master that was paused, partitioned or replaced
// and still believes it is master then writes with an older token and is
// refused, however late its write arrives. An equal token is admitted: it
// is the same term writing again.
//
// The package imports only the standard library, so a resource imports it
// without the SDK or the servers.
//
// # Token 0
//
// 0 is not a token. Rafting never grants a mastership token 0 (a token is
// epoch<<40 | the Raft index of the granting entry, and indexes start at
// 1), and the SDK reports 0 exactly when there is no mastership. Everything
// here refuses 0 with ErrNoToken rather than admit it as "older than any
// token": a caller that forgot to pass its token must fail loudly, not
// write through a fresh resource.
//
// # The pieces
//
//   - Check(highest, token) is the rule alone, for a resource that keeps
//     the highest token itself (examples/masterstandby keeps it in a file,
//     under a lock shared by processes).
//   - Guard keeps the highest token in memory. Admit checks and raises it
//     without blocking; Do runs an action under the check, so that no
//     stale writer can act between the check and the write.
//   - Over HTTP, the master's client sets Header (Transport does it for
//     every request, or SetHeader for one), and the resource wraps its
//     write handlers with Middleware, which answers 409 stale_token to a
//     stale token; CheckResponse turns that answer back into a
//     *StaleTokenError on the client.
//
// # Threading
//
// Every function and method here is safe for concurrent use. Guard.Admit,
// Guard.Highest and Check never block. Guard.Do waits for the Do calls
// before it, and gives up when its context ends.
//
// # Checking and acting are one step
//
// A check is only a fence if nothing can happen between it and the write it
// guards: otherwise an old master can pass its check, a new master can
// check and write, and then the old master's write lands over the new one.
// Guard.Do makes the two one step for an in-process resource; Middleware
// uses it. A store shared by several processes must do the same in its own
// terms: a lock around read-check-write-store (a file under flock), or one
// conditional statement, or a transaction, as below.
//
// # A SQL table (recipe)
//
// Keep the token of the last write in each row, and make the write
// conditional on it, in the same statement:
//
//	UPDATE jobs SET state = $1, fencing_token = $2
//	 WHERE id = $3 AND fencing_token <= $2
//
// Zero rows affected means stale: a newer master has written this row (or
// the row does not exist, so create rows with fencing_token 0 and tell the
// two apart when it matters). Refuse a 0 token before the statement
// (Check(0, token)), since fencing_token <= 0 holds for a new row. The
// database evaluates the condition on the row it writes, under that row's
// write lock, so the check and the write are one step: Postgres re-checks
// the WHERE clause on the newest version of a row it waited for, and MySQL
// InnoDB's UPDATE reads the latest committed row.
//
// This fences each row on its own: an old master can still write rows the
// new one has not touched yet. When one master's writes span rows or
// tables, fence them all through one row, first in the transaction:
//
//	CREATE TABLE fence (name text PRIMARY KEY, token bigint NOT NULL);
//	INSERT INTO fence VALUES ('billing', 0);  -- once
//
//	BEGIN;
//	UPDATE fence SET token = $1 WHERE name = $2 AND token <= $1;
//	-- 0 rows: stale, ROLLBACK; 1 row: this master holds the fence row's
//	-- lock until COMMIT, and a newer master's UPDATE waits for it.
//	... the writes ...
//	COMMIT;
//
// The fence row's lock serializes the masters' transactions; a master whose
// token is lower than the stored one updates no row and rolls back. (That
// is READ COMMITTED, the default of Postgres; under REPEATABLE READ or
// SERIALIZABLE the waiting transaction fails with a serialization error
// instead: retry it, and the retry is refused if it is stale.)
// The package's SQL example has both in Go, with database/sql.
//
// Tokens fit a signed BIGINT: Rafting keeps them below 2^53 (so they also
// survive JSON). database/sql refuses a uint64 of 2^63 or more.
package fence
