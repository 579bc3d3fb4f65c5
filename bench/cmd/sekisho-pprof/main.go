// Command sekisho-pprof is sekisho with the Go profiler: the same command
// line as cmd/sekisho, plus net/http/pprof on the loopback address in
// SEKISHO_PPROF (e.g. 127.0.0.1:6060). It exists only so the benchmark
// can say where time and memory go (benchrun -pprof); the real binary
// never links the profiler.
package main

import (
	"fmt"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"

	"github.com/sekisho/sekisho/internal/cli"
)

func main() {
	if addr := os.Getenv("SEKISHO_PPROF"); addr != "" {
		go func() {
			fmt.Fprintln(os.Stderr, "pprof:", http.ListenAndServe(addr, nil))
		}()
	}
	os.Exit(cli.Main(os.Args, cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
