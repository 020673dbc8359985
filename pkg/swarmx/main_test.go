package swarmx

import (
	"os"
	"testing"

	"github.com/deployd/deployd/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.SwarmMain(m)) }
