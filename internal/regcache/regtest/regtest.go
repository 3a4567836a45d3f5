// Package regtest runs Debian's docker-registry (the CNCF distribution
// registry) on 127.0.0.1 for tests: a random free port, a temporary
// configuration, storage in the test's temporary directory, optionally
// with htpasswd authentication. `make deps` installs the package.
package regtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Binary is the registry executable Debian's docker-registry installs.
const Binary = "/usr/bin/docker-registry"

// Registry is a running registry.
type Registry struct {
	Host     string // 127.0.0.1:PORT
	Dir      string // storage root
	User     string // empty without authentication
	Password string
	// AuthFile is a containers auth.json holding the credentials (an
	// empty one without authentication), for REGISTRY_AUTH_FILE.
	AuthFile string
}

// Start starts a registry for the test and stops it at cleanup. With auth
// set it requires user "cfs" with a random password (htpasswd, bcrypt).
func Start(t testing.TB, auth bool) *Registry {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("SKIPPED LOUDLY: %s is not installed (Debian package docker-registry; `make deps` installs it): %v", Binary, err)
	}
	dir := t.TempDir()
	r := &Registry{Dir: filepath.Join(dir, "storage"), AuthFile: filepath.Join(dir, "auth.json")}
	authCfg := ""
	auths := map[string]any{}
	if auth {
		r.User, r.Password = "cfs", strconv.FormatInt(time.Now().UnixNano(), 36)
		h, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		hp := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(hp, []byte(r.User+":"+string(h)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		authCfg = fmt.Sprintf("auth:\n  htpasswd:\n    realm: cfs-test\n    path: %s\n", hp)
	}
	port := freePort(t)
	r.Host = "127.0.0.1:" + strconv.Itoa(port)
	if auth {
		auths[r.Host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Password))}
	}
	b, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.AuthFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, r.Dir, r.Host, authCfg)
	cp := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cp, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Binary, "serve", cp)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", Binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("%s exited: %v\n%s", Binary, err, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("%s did not answer on %s within 20s: %v\n%s", Binary, r.Host, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a TCP port free on 127.0.0.1 at the time of the call.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Isolate keeps the containers configuration of the host out of the test:
// REGISTRY_AUTH_FILE and CONTAINERS_REGISTRIES_CONF point at empty files
// (credentials then come only from the auth file a test names).
func Isolate(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.json")
	conf := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(auth, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", auth)
	t.Setenv("CONTAINERS_REGISTRIES_CONF", conf)
	t.Setenv("DOCKER_CONFIG", dir)
}
