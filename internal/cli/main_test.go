package cli

import (
	"os"
	"testing"

	"github.com/sekisho/sekisho/internal/testenv/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
