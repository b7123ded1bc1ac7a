// Package simulation checks the exactly-once protocol of internal/submission by
// deterministic simulation: the real Submit, guard, lease renewal, journal and start-up
// replay of two or three replicas share one store in one process, on the simulated time
// of testing/synctest, under a schedule of faults that a seed decides (callers, the
// store, e签宝, crashes, pauses). Every schedule is checked against the protocol's
// invariants; a failing seed prints the command that replays it and a trace of the
// schedule.
//
// The package is test code only (see sim_test.go, store_test.go); `make simulate` runs
// it.
package simulation
