package sim

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/tandem-ota/tandem/internal/rootfs"
)

// CutFromEnv reads the power-cut switch of a simulated device from the
// environment (docs/simulator.md): TANDEM_SIM_CUT=N cuts power at the N-th
// cut point, TANDEM_SIM_CUT_MODE (drop, tear or keep) says what survives.
// Unset, they are 0 (no cut) and the zero mode.
func CutFromEnv(getenv func(string) string) (at int, mode rootfs.CutMode, err error) {
	if v := getenv("TANDEM_SIM_CUT"); v != "" {
		if at, err = strconv.Atoi(v); err != nil || at < 1 {
			return 0, mode, fmt.Errorf("TANDEM_SIM_CUT=%q: want a cut point number ≥ 1", v)
		}
	}
	if v := getenv("TANDEM_SIM_CUT_MODE"); v != "" {
		if mode, err = rootfs.ParseCutMode(v); err != nil {
			return 0, mode, fmt.Errorf("TANDEM_SIM_CUT_MODE: %w", err)
		}
	}
	return at, mode, nil
}

// Serve serves the files of dir read-only over HTTP on ln, with Range
// requests, ETag and Last-Modified, as a plain web server or CDN would
// (`tandem sim serve`, for delta installs), until ln fails.
func Serve(ln net.Listener, dir string) error {
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}
