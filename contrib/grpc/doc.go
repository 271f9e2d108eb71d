// Package raftinggrpc connects grpc-go to Rafting: the rafting:///service
// resolver, fed by an sdk.Client's membership cache, and the "rafting"
// load-balancing policy, which picks with Rafting's balancers. It is a
// module of its own (github.com/rafting/rafting/contrib/grpc), so that
// the core module does not pull gRPC.
//
//	import raftinggrpc "github.com/rafting/rafting/contrib/grpc"
//
//	c, err := sdk.Connect(ctx)
//	conn, err := grpc.NewClient("rafting:///orders",
//		grpc.WithResolvers(raftinggrpc.NewBuilder(c, balancer.LeastLoaded())),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// # The resolver
//
// rafting:///orders follows the service "orders" of the Client's tenant
// (the Client names the tenant; the target has no authority). It sends
// gRPC the instances the SDK's balancers pick from: ready, with a
// positive weight, and those a quarantine keeps after a mass removal
// (sdk.WithQuarantine); starting and draining instances are left out, so
// a Member.Leave takes its instance out of every caller's ClientConn
// before it deregisters. Changes arrive as the cache sees them, pushed by
// the Client's watch: nothing polls, and ResolveNow does nothing. While
// the servers do not answer, the last membership stays (the cache is
// static-stable), and a ClientConn made then waits for the service's first
// answer, reporting an error to gRPC every 5 s until it comes.
//
// The resolver selects the "rafting" balancer in the service config it
// gives gRPC, and hands it the Builder's policy. That service config
// replaces one given with grpc.WithDefaultServiceConfig.
//
// # The balancer
//
// The "rafting" policy keeps a SubConn per instance and a Rafting
// balancer.Balancer over the instances whose connection is ready; its
// Picker picks with that Balancer, lock-free. The policy is the
// Builder's: any balancer.Policy (RoundRobin, MonteCarlo, LeastLoaded, a
// balancer.Func or a type of your own). The policy also works with
// another resolver (dns:///, say), each address an instance of the
// default weight, chosen by a service config that names one of the
// built-in policies: {"loadBalancingConfig": [{"rafting": {"policy":
// "least_loaded"}}]} (round_robin, monte_carlo, least_loaded; default
// round_robin).
//
// Each RPC's end is reported to the Balancer: LeastLoaded counts RPCs in
// flight per instance (a stream until it ends), and the codes that say
// an instance failed (Unavailable, Internal, Unknown, DataLoss) count
// towards its ejection (balancer.EjectAfter in a row eject it for
// balancer.EjectFor), while Canceled and DeadlineExceeded count neither
// way and every other code is the application's answer, a success.
//
// An instance whose connection drops leaves the Balancer at once, before
// the resolver hears of it: RPCs already sent on the connection fail
// (Unavailable), and the next ones go to the other instances. A
// connection lost is reconnected at once, with gRPC's backoff, until the
// instance leaves the membership (a crashed member's session ends after
// drop_grace, 0.5 s by default). While no instance is ready the state is
// Connecting (RPCs wait) if some connection is being made, else
// TransientFailure: fail-fast RPCs fail with Unavailable and the reason
// (no instance registered and ready, or the last connection error).
//
// # Threading
//
// A Builder may serve any number of ClientConns. Each ClientConn's
// resolver has one goroutine, which Close (called by the ClientConn's
// Close) stops and waits for. Picks take no lock.
package raftinggrpc
