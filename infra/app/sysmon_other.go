//go:build !linux

package app

// QuietSysmon does nothing off Linux (sysmon_linux.go).
func QuietSysmon() {}
