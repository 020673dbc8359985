package main

// faultPointEnv names a deploy step at which deployd kills itself with
// SIGKILL, so that crash-recovery tests can stop it exactly there. Only a
// binary built with -tags faultinject has the hook (fault_inject.go); any
// other logs a warning and ignores the variable (fault_none.go).
const faultPointEnv = "DEPLOYD_FAULT_POINT"
