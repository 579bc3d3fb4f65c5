// Command sekisho is an identity-aware gateway for self-hosted web apps.
package main

import (
	"os"

	"github.com/sekisho/sekisho/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
