// Package benchmarks holds Rafting's end-to-end benchmarks and the
// side-by-side comparison with etcd and ZooKeeper. It is its own module so
// that the peers' client libraries never enter the main module's graph.
// Results, with the command, machine and date of each run, are in RESULTS.md.
//
// Every benchmark reads its settings through internal/bench's knobs: an
// environment variable RAFTING_<BENCHMARK>_<NAME> each, documented where
// it is read, checked before anything starts; the quick mode also from
// -quick (go test ... -args -quick).
package benchmarks
