package log

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"

	"github.com/cairnlog/cairn/internal/hastack"
	"github.com/go-sql-driver/mysql"
)

// haWorkers is the load generator's concurrency against mysql+s3: a batch
// waits for its database commit, so it takes more requests in flight than
// the POSIX driver to saturate a frontend.
const haWorkers = 2048

// BenchmarkMySQLS3HTTPAdd is BenchmarkHTTPAdd on the mysql+s3 driver: a
// fresh MariaDB and MinIO per iteration, one or two frontends (child
// processes) sharing them, POST /add spread over the frontends.
func BenchmarkMySQLS3HTTPAdd(b *testing.B) {
	for _, frontends := range []int{1, 2} {
		b.Run(fmt.Sprintf("frontends=%d", frontends), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				aws := testEngines(b)
				cfgJSON, _ := json.Marshal(aws)
				skey, vkey := newKey(b, testOrigin)
				var bases []string
				var children []*childLog
				for range frontends {
					c := startChild(b, b.TempDir(), skey, envChildDefaults+"=1", envChildAWS+"="+string(cfgJSON))
					children = append(children, c)
					bases = append(bases, c.base)
				}
				lat := newLatencies(benchRecords)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				followed := make(chan struct{})
				go func() { lat.followCheckpoints(ctx, bases[0], vkey, benchRecords); close(followed) }()
				b.StartTimer()
				start := time.Now()
				err := driveHTTPAdd(bases, haWorkers, benchRecords, lat.done)
				elapsed := time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				<-followed
				cancel()
				lat.report(b, benchRecords, elapsed)
				for _, c := range children {
					c.stop(b)
				}
			}
		})
	}
}

// testEngines starts a MariaDB and a MinIO for one test or iteration
// (skipping when they are not installed and CAIRN_REQUIRE_HA is unset:
// scripts/ha-deps.sh installs them).
func testEngines(t testing.TB) AWSConfig { return testEnginesIn(t, t.TempDir()) }

// testEnginesIn is testEngines with the engines' data under dir.
func testEnginesIn(t testing.TB, dir string) AWSConfig {
	port := func() int { return testport.Port(t) }
	missing := func(err error) {
		if os.Getenv("CAIRN_REQUIRE_HA") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	db, err := hastack.NewMariaDB(dir+"/db", port(), io.Discard)
	if err != nil {
		missing(err)
	}
	s3, err := hastack.NewMinIO(dir+"/s3", port(), io.Discard)
	if err != nil {
		missing(err)
	}
	for _, e := range []*hastack.Server{db.Server, s3.Server} {
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Kill)
	}
	return AWSConfig{MySQLDSN: db.DSN, S3Endpoint: s3.Endpoint, S3Bucket: "bench", S3Region: "us-east-1",
		S3PathStyle: true, S3AccessKeyFile: s3.AccessKeyFile, S3SecretKeyFile: s3.SecretKeyFile}
}

// BenchmarkTesseraExampleMySQLS3HTTPAdd is the reference for the above:
// Tessera's own AWS example server (cmd/conformance/aws at the pinned
// version, built once in a scratch module so the project's go.mod stays
// clean) on the same engines, under the same load generator.
func BenchmarkTesseraExampleMySQLS3HTTPAdd(b *testing.B) {
	bin, err := tesseraAWSExample()
	if err != nil {
		b.Skipf("cannot build Tessera's AWS example server: %v", err)
	}
	for range b.N {
		b.StopTimer()
		aws := testEngines(b)
		dsn, err := mysql.ParseDSN(aws.MySQLDSN)
		if err != nil {
			b.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(dsn.Addr)
		secret, err := os.ReadFile(aws.S3SecretKeyFile)
		if err != nil {
			b.Fatal(err)
		}
		skey, _ := newKey(b, "example.test/tessera-aws")
		addr := testport.Addr(b)
		// The example does not create its bucket.
		if _, err := openAWS(context.Background(), aws, http.DefaultClient, antispamLag(DefaultDedupCacheEntries)); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bin, "--bucket="+aws.S3Bucket, "--db_name="+dsn.DBName, "--db_host="+host, "--db_port="+port,
			"--db_user="+dsn.User, "--db_password="+dsn.Passwd, "--s3_endpoint="+aws.S3Endpoint, "--s3_access_key=cairn",
			"--s3_secret="+strings.TrimSpace(string(secret)), "--listen="+addr, "--signer="+skey)
		cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true")
		benchExternal(b, cmd, "http://"+addr, haWorkers)
	}
}

// tesseraAWSExample builds (once, cached beside MinIO) Tessera's AWS example.
func tesseraAWSExample() (string, error) {
	bin := filepath.Join(filepath.Dir(hastack.MinIOPath()), "tessera-conformance-aws-v1.0.4")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	dir, err := os.MkdirTemp("", "tessera-aws")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	for _, args := range [][]string{
		{"mod", "init", "scratch"},
		{"get", "github.com/transparency-dev/tessera@v1.0.4"},
		{"build", "-o", bin, "github.com/transparency-dev/tessera/cmd/conformance/aws"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return bin, nil
}
