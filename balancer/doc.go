// Package balancer chooses an endpoint for each request among the instances
// of a service: in turn (RoundRobin), at random by weight (MonteCarlo), by
// requests in flight (LeastLoaded), or by a policy of your own (Func, or any
// type implementing Policy).
//
// # Calling a farm: Do
//
// Do is the first thing to use. It picks an endpoint, calls your function
// with it, reports the outcome, and on a failure tries another endpoint,
// never one it already tried:
//
//	b := svc.Balancer(balancer.LeastLoaded()) // SDK; or balancer.New + Update
//	err := balancer.Do(ctx, b, 3, func(ctx context.Context, e balancer.Endpoint) error {
//		resp, err := call(ctx, e.Address)
//		if err != nil {
//			return err // refused, reset, timed out: counted, tried elsewhere
//		}
//		if resp.StatusCode >= 400 {
//			return balancer.StatusError(resp.StatusCode) // 5xx: elsewhere; 4xx: stop
//		}
//		return nil
//	})
//
// A 5xx answer (StatusError) or any other error counts as a failure of the
// endpoint and is tried on another; a 4xx is not the endpoint's fault and
// is returned at once; Permanent(err) stops the retries; a cancel counts
// for nothing and stops. Do's error wraps the last one and says how many
// endpoints were tried.
//
// # Picking by hand
//
// A Balancer holds a Policy and the current list of endpoints. Update gives
// it a new list, on every membership change; Pick, on every request, returns
// one endpoint of the list:
//
//	b := balancer.New(balancer.LeastLoaded())
//	b.Update(endpoints)
//	...
//	e, done, err := b.PickTracked()
//	if err != nil {
//		return err // balancer.ErrNoEndpoints
//	}
//	err = call(ctx, e.Address)
//	done.Finish(err)
//
// PickExcept(ids...) is PickTracked avoiding the endpoints already tried,
// for a retry loop of your own; Done.Release ends a pick that was not used.
// Stats shows the requests in flight: one that only grows is a missing
// Finish.
//
// The SDK keeps a Balancer per service it watches and calls Update itself,
// and Service.Balancer returns one per policy (a Follower); programs use
// Do, or Pick and PickTracked.
//
// # Weights
//
// An Endpoint's Weight is its capacity relative to the others. Weight 0
// means never picked: an instance draining, or kept out of rotation; a
// negative weight counts as 0. When every endpoint has weight 0, Pick
// returns ErrNoEndpoints as for an empty list. An instance that registered
// no weight has DefaultWeight (100), which the caller (the SDK) fills in:
// the balancer gives 0 no meaning of "unset". RoundRobin takes every
// endpoint of positive weight equally; MonteCarlo and LeastLoaded follow the
// weights.
//
// # The caller's duties
//
//   - Give every endpoint an ID unique within the list: in-flight counts
//     and failure records follow it across Updates.
//   - Call Update when the list changes, with the list to use. Update
//     applies whatever it is given, an empty list included, after which
//     Pick returns ErrNoEndpoints. Keeping the last known-good list when a
//     watch fails, and debouncing a burst of changes into one Update, are
//     up to the caller; the SDK does both.
//   - Treat Endpoint.Meta as read-only after Update: the map is shared by
//     every pick of the endpoint, not copied.
//   - After PickTracked or PickExcept, end the Done exactly once: Finish
//     when the request ends, with the error if the endpoint is to blame and
//     nil otherwise, or Release if the request was not made. A Done is a
//     value and cannot tell a second call: it shows in Stats as Finished
//     above Picked. Do keeps this duty for you.
//
// # Ejection
//
// RoundRobin, MonteCarlo and LeastLoaded skip an endpoint that failed
// EjectAfter times in a row, as reported through Done.Finish, for EjectFor;
// then it is picked again on probation, where one success clears its
// record and one failure ejects it again. A context.Canceled error counts
// neither way. Ejection never turns into an error: with every endpoint
// ejected, picks fail open. Only tracked picks (Do, PickTracked,
// PickExcept) feed it (Pick reports nothing), and a Func or custom Picker
// does not take part: it returns the zero Done, which reports nothing.
//
// # Errors
//
// A pick that finds no endpoint returns ErrNoEndpoints, or a
// *NoEndpointsError that matches it with errors.Is and says more: the
// Balancer's name (WithName), how many endpoints are registered and how
// many are not ready (weight 0 in the list, or left out of it:
// SetNotReady), and how many PickExcept excluded:
//
//	sdk: service "orders": no endpoints to pick (2 registered, 2 not ready: starting/draining/weight 0)
//
// # Threading
//
// Pick, PickTracked, PickExcept, Done.Finish and Done.Release are safe for
// concurrent use from any number of goroutines; they take no lock, never
// block, and allocate nothing, their errors included (a *NoEndpointsError
// is made at Update). Do is safe for concurrent use and adds no allocation
// to fn's on its way to success. Update, SetNotReady, Endpoints, Stats and
// Follower are safe for concurrent use with them and with each other:
// Update builds the new Picker off the hot path, under a mutex that only
// updates take, and swaps it in with an atomic pointer, so a pick sees the
// old list or the new one, never a mix. Nothing in the package logs, reads
// the environment, does IO or starts a goroutine (the runtime runs the
// cleanup that forgets a collected Follower).
//
// # Custom policies
//
// A Policy builds an immutable Picker from a list; the Balancer calls it on
// every Update. Func makes one from a function, and any type implementing
// Policy will do (see the custom policy example). Package balancertest
// checks that a policy keeps the contract; every built-in one passes it.
//
// The package imports only the standard library.
package balancer
