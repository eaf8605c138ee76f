package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCommand is one Redis command's share of a measured window: how many
// calls and how much of Redis's time (INFO commandstats usec) each acked
// message cost. Counts are exact whatever else runs; time is Redis's own
// accounting, which a busy machine inflates less than process CPU.
type RedisCommand struct {
	Name       string  `json:"name"`
	Calls      int64   `json:"calls"`
	PerMsg     float64 `json:"calls_per_msg"`
	UsecPerMsg float64 `json:"usec_per_msg"`
}

type cmdStat struct{ calls, usec int64 }

// parseCommandStats reads the "# Commandstats" section of INFO:
// cmdstat_<name>:calls=N,usec=N,usec_per_call=F,... per line; lines it
// cannot read are skipped (another Redis version may add fields or lines).
func parseCommandStats(info string) map[string]cmdStat {
	out := map[string]cmdStat{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || !commandName(name) {
			continue
		}
		var s cmdStat
		var seen int
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				continue
			}
			switch k {
			case "calls":
				s.calls, seen = n, seen+1
			case "usec":
				s.usec, seen = n, seen+1
			}
		}
		if seen == 2 {
			out[name] = s
		}
	}
	return out
}

// commandName: Redis's command names (with a subcommand after "|", module
// commands with a "."); anything else is not a command line.
func commandName(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789|._-") == ""
}

// redisWatch samples a Redis's command stats at the start of a window.
type redisWatch struct {
	rdb   *redis.Client
	first map[string]cmdStat
}

// watchRedis starts a window on the Redis at addr; nil if it cannot be read
// (the report then has no Redis commands, nothing else changes).
func watchRedis(ctx context.Context, addr string) *redisWatch {
	if addr == "" {
		return nil
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	first, err := commandStats(ctx, rdb)
	if err != nil {
		_ = rdb.Close()
		return nil
	}
	return &redisWatch{rdb: rdb, first: first}
}

func commandStats(ctx context.Context, rdb *redis.Client) (map[string]cmdStat, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redis commandstats: %w", err)
	}
	return parseCommandStats(info), nil
}

// finish closes the window: every command called in it, per acked message,
// most time first. INFO itself is left out.
func (w *redisWatch) finish(ctx context.Context, msgs int64) []RedisCommand {
	if w == nil {
		return nil
	}
	defer w.rdb.Close()
	last, err := commandStats(ctx, w.rdb)
	if err != nil || msgs <= 0 {
		return nil
	}
	return commandsPerMsg(w.first, last, msgs)
}

func commandsPerMsg(first, last map[string]cmdStat, msgs int64) []RedisCommand {
	var out []RedisCommand
	for name, s := range last {
		d := cmdStat{s.calls - first[name].calls, s.usec - first[name].usec}
		if name == "info" || d.calls <= 0 {
			continue
		}
		out = append(out, RedisCommand{Name: name, Calls: d.calls,
			PerMsg: float64(d.calls) / float64(msgs), UsecPerMsg: float64(d.usec) / float64(msgs)})
	}
	slices.SortFunc(out, func(a, b RedisCommand) int {
		return cmp.Or(cmp.Compare(b.UsecPerMsg, a.UsecPerMsg), strings.Compare(a.Name, b.Name))
	})
	return out
}

func printRedisCommands(cmds []RedisCommand) {
	if len(cmds) == 0 {
		return
	}
	fmt.Printf("%-24s %10s %12s\n", "redis command", "calls/msg", "redis µs/msg")
	var calls, usec float64
	for _, c := range cmds {
		fmt.Printf("%-24s %10.2f %12.1f\n", c.Name, c.PerMsg, c.UsecPerMsg)
		calls += c.PerMsg
		usec += c.UsecPerMsg
	}
	fmt.Printf("%-24s %10.2f %12.1f\n", "(all commands)", calls, usec)
}
