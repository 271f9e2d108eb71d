package fence_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/rafting/rafting/sdk/fence"
)

func ExampleGuard() {
	var g fence.Guard // one per resource; the zero Guard has seen nothing

	fmt.Println(g.Admit(5))  // the master of term 5
	fmt.Println(g.Admit(5))  // the same term again
	fmt.Println(g.Admit(7))  // a new master
	fmt.Println(g.Admit(5))  // the old master, late
	fmt.Println(g.Admit(0))  // a caller without a token
	fmt.Println(g.Highest()) // what to persist, for NewGuard after a restart
	// Output:
	// <nil>
	// <nil>
	// <nil>
	// fence: stale fencing token 5: a newer master has written with 7
	// fence: no fencing token
	// 7
}

// A resource in the same process writes under the check with Do, so that an
// old master cannot write between its check and its write.
func ExampleGuard_Do() {
	var g fence.Guard
	var ledger []string
	write := func(ctx context.Context, token uint64, line string) error {
		return g.Do(ctx, token, func() error {
			ledger = append(ledger, fmt.Sprintf("%d %s", token, line))
			return nil
		})
	}
	ctx := context.Background() // a master passes its term's ctx (sdk.Term.Ctx)
	fmt.Println(write(ctx, 5, "a"))
	fmt.Println(write(ctx, 7, "b"))
	err := write(ctx, 5, "c")
	fmt.Println(errors.Is(err, fence.ErrStaleToken), err)
	fmt.Println(ledger)
	// Output:
	// <nil>
	// <nil>
	// true fence: stale fencing token 5: a newer master has written with 7
	// [5 a 7 b]
}

// The HTTP pair: the resource wraps its write handler with Middleware; each
// master's client stamps its requests with Transport.
func ExampleMiddleware() {
	var g fence.Guard
	resource := httptest.NewServer(fence.Middleware(&g, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent) // the write, admitted
	})))
	defer resource.Close()

	// In a real master, Token is a closure over the SDK's member:
	//	func() (uint64, bool) { t, ok := m.Mastership(); return t.Token, ok }
	master := func(token uint64, ok bool) *http.Client {
		return &http.Client{Transport: &fence.Transport{Token: func() (uint64, bool) { return token, ok }}}
	}
	put := func(c *http.Client) {
		resp, err := c.Post(resource.URL, "text/plain", strings.NewReader("write"))
		if err != nil {
			fmt.Println(errors.Is(err, fence.ErrNoToken), "not sent")
			return
		}
		defer resp.Body.Close()
		if err := fence.CheckResponse(resp); err != nil {
			fmt.Println(resp.StatusCode, err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		fmt.Println(resp.StatusCode)
	}
	put(master(5, true))  // the first master
	put(master(7, true))  // its successor
	put(master(5, true))  // the first one again, still believing
	put(master(0, false)) // a standby
	// Output:
	// 204
	// 204
	// 409 fence: stale fencing token 5: a newer master has written with 7
	// true not sent
}

// Check serves a resource that keeps the highest token itself; it must run
// under the same lock (or in the same transaction) as the write.
func ExampleCheck() {
	highest := uint64(7) // read from the resource's own storage
	for _, token := range []uint64{8, 7, 6, 0} {
		fmt.Println(token, fence.Check(highest, token))
	}
	// Output:
	// 8 <nil>
	// 7 <nil>
	// 6 fence: stale fencing token 6: a newer master has written with 7
	// 0 fence: no fencing token
}
