// Package balancer chooses an endpoint for each request among the instances
// of a service: in turn (RoundRobin), at random by weight (MonteCarlo), by
// requests in flight (LeastLoaded), or by a policy of your own (Func, or any
// type implementing Policy).
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
// The SDK keeps a Balancer per service it watches and calls Update itself;
// programs use Pick and PickTracked.
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
//   - After PickTracked, call Finish on the Done exactly once, when the
//     request ends, with the error if the endpoint is to blame and nil
//     otherwise.
//
// # Ejection
//
// RoundRobin, MonteCarlo and LeastLoaded skip an endpoint that failed
// EjectAfter times in a row, as reported through Done.Finish, for EjectFor;
// then it is picked again on probation, where one success clears its
// record and one failure ejects it again. A context.Canceled error counts
// neither way. Ejection never turns into an error: with every endpoint
// ejected, picks fail open. Only PickTracked feeds it (Pick reports
// nothing), and a Func or custom Picker does not take part: it returns the
// zero Done, which reports nothing.
//
// # Threading
//
// Pick, PickTracked and Done.Finish are safe for concurrent use from any
// number of goroutines; they take no lock, never block, and allocate
// nothing. Update and Endpoints are safe for concurrent use with them and
// with each other: Update builds the new Picker off the hot path, under a
// mutex that only Updates take, and swaps it in with an atomic pointer, so
// a pick sees the old list or the new one, never a mix. Nothing in the
// package logs, reads the environment, does IO or starts a goroutine.
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
