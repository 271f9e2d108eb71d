package sdk

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk/internal/watchcache"
)

// The wire fields of an instance are defined once, in api.Instance; the
// SDK's copies of them (the fast decoder, the balancer's endpoint, the
// cache's comparison) are checked here against that definition by
// reflection, so that a field added to api.Instance or balancer.Endpoint
// and forgotten on one of these paths fails a test instead of silently
// costing every watcher encoding/json (7x slower) or hiding a change from
// the balancers.

// setEvery sets every field of the struct v points to to a value that is
// not its zero value, different for each field (seed).
func setEvery(t *testing.T, v reflect.Value, seed int) {
	t.Helper()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		n := seed*100 + i + 1
		switch {
		case f.Type() == reflect.TypeOf(time.Time{}):
			f.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, n*1000, time.UTC)))
		case f.Kind() == reflect.String:
			f.SetString(fmt.Sprintf("%s-%d", name, n))
		case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
			f.SetInt(int64(n))
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Kind() == reflect.Map && f.Type().Key().Kind() == reflect.String && f.Type().Elem().Kind() == reflect.String:
			f.Set(reflect.ValueOf(map[string]string{name: fmt.Sprint(n)}))
		default:
			t.Fatalf("%s.%s: a field of kind %s that this test cannot set: teach it", v.Type(), name, f.Kind())
		}
	}
}

// TestEveryInstanceFieldTakesTheFastPath: a service answer whose instances
// have every field of api.Instance set decodes on the fast path, exactly
// as encoding/json decodes it.
func TestEveryInstanceFieldTakesTheFastPath(t *testing.T) {
	r := api.ServiceResponse{Index: 9, ModifyIndex: 8, Service: "s"}
	for i := range 3 {
		var in api.Instance
		setEvery(t, reflect.ValueOf(&in).Elem(), i)
		r.Instances = append(r.Instances, in)
	}
	b, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := fastService(b, nil)
	if !ok {
		t.Fatalf("the fast decoder (fastjson.go) refused an answer with every api.Instance field set: is a field missing from it?\n%s", b)
	}
	want, err := slowService(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the fast decoder differs from encoding/json:\n got %+v\nwant %+v", got, want)
	}
}

// TestEveryEndpointFieldReachesTheBalancer: each field of
// balancer.Endpoint is filled from the instance (endpoints) and counted by
// the cache's comparison (watchcache.SameEndpoint): endpoints that differ in any one
// field are not the same, so the balancers are updated.
func TestEveryEndpointFieldReachesTheBalancer(t *testing.T) {
	var in api.Instance
	setEvery(t, reflect.ValueOf(&in).Elem(), 1)
	in.State = api.StateReady // pickable
	eps := watchcache.Endpoints([]api.Instance{in})
	if len(eps) != 1 {
		t.Fatalf("watchcache.Endpoints(a ready instance of weight %d) = %v", in.Weight, eps)
	}
	ep := reflect.ValueOf(eps[0])
	for i := range ep.NumField() {
		if ep.Field(i).IsZero() {
			t.Errorf("balancer.Endpoint.%s is not filled from the instance (watchcache.Endpoints)", ep.Type().Field(i).Name)
		}
	}
	var a balancer.Endpoint
	setEvery(t, reflect.ValueOf(&a).Elem(), 1)
	for i := range ep.NumField() {
		b := a
		b.Meta = map[string]string{}
		for k, v := range a.Meta {
			b.Meta[k] = v
		}
		one := reflect.ValueOf(&b).Elem()
		var other balancer.Endpoint
		setEvery(t, reflect.ValueOf(&other).Elem(), 2)
		one.Field(i).Set(reflect.ValueOf(other).Field(i))
		if watchcache.SameEndpoint(a, b) {
			t.Errorf("watchcache.SameEndpoint does not tell endpoints apart by %s", ep.Type().Field(i).Name)
		}
	}
}
