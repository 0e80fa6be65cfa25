package main

import (
	"context"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/sluicehq/sluice/chaos/load"
	"github.com/sluicehq/sluice/chaos/mock"
)

// The bare proxy relays JSON and streamed answers from the bench's mock
// under concurrent load without losing any.
func TestBareProxyRelays(t *testing.T) {
	region, err := mock.NewRegion(mockRegion(mockKey))
	if err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(region)
	t.Cleanup(func() { _ = region.Close(); upstream.Close() })
	u, _ := url.Parse(upstream.URL)
	proxy := httptest.NewServer(newBareProxy(u))
	t.Cleanup(proxy.Close)
	sys := &system{name: targetBare, urls: []string{proxy.URL}, azure: true}
	for _, stream := range []bool{false, true} {
		r := load.Run{Rate: 400, Duration: 500 * time.Millisecond}.Do(context.Background(), sys.target(fastDeployment, stream, 0))
		if r.Sent != 200 || r.OK() != r.Sent {
			t.Errorf("stream=%v: sent %d, ok %d, statuses %v, errors %d", stream, r.Sent, r.OK(), r.Statuses, r.Errors)
		}
		if stream && r.TTFB.P50 <= 0 {
			t.Errorf("stream without time to first byte")
		}
	}
}
