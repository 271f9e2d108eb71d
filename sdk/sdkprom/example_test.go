package sdkprom_test

import (
	"context"
	"log"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdkprom"
)

// A Client that reports its picks, its cache's age and its members'
// roles to Prometheus's default registry, served by promhttp.Handler()
// like any other collector.
func ExampleNew() {
	ctx := context.Background()
	cl, err := sdk.Connect(ctx, sdk.WithMetrics(sdkprom.New(prometheus.DefaultRegisterer)))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
}
