// Package tenants holds the tenant model's pure helpers, shared by the
// server's HTTP layer and its meta state machine: quota defaults and
// validation, and the typed error of an exceeded count quota.
//
// It imports only the standard library, golang.org/x/time/rate and
// github.com/rafting/rafting/api. Nothing here does IO or reads the clock;
// every function is deterministic and safe for concurrent use.
package tenants
