package server_test

import (
	"os"
	"testing"

	"github.com/sekisho/sekisho/internal/testenv/pgtest"
)

// TestMain lets tests start a real Postgres (pgtest.Start), one server for
// the whole test binary, stopped at the end.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
