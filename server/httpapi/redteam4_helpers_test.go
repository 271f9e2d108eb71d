package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// rt4Client is an HTTP client whose connections come from the source
// address ip (127.0.0.x), each request on a new connection when fresh.
func rt4Client(ip net.IP, fresh bool, timeout time.Duration) (*http.Client, *http.Transport) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	tr := &http.Transport{DisableKeepAlives: fresh, DialContext: d.DialContext, MaxIdleConnsPerHost: 256}
	return &http.Client{Transport: tr, Timeout: timeout}, tr
}

// rt4Do sends one request and reads its answer: its status ("error: ..."
// for a transport error) and how long it took.
func rt4Do(ctx context.Context, client *http.Client, method, url, token string) (string, time.Duration) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return "error: " + err.Error(), 0
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return "error: " + err.Error(), time.Since(start)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode), time.Since(start)
}
