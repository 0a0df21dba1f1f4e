package log

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// The mysql+s3 driver never asks a cloud metadata service: a recording
// stand-in for the instance metadata endpoint (where the AWS SDK would look
// for credentials or a region) sees no request while a log opens, appends,
// integrates and serves reads, and the library leaves the process
// environment alone (it needs no AWS_EC2_METADATA_DISABLED).
func TestMySQLS3NeverAsksInstanceMetadata(t *testing.T) {
	var asked atomic.Int64
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		t.Errorf("instance metadata asked: %s %s", r.Method, r.URL)
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer imds.Close()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	// Nothing else in the SDK's default chain could answer first: a client
	// that consulted the chain would end at the metadata stand-in.
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")

	aws := testEngines(t)
	tl := newTestLogWith(t, func(c *Config) { c.Storage, c.AWS, c.CheckpointInterval = "mysql+s3", aws, time.Second })
	for i := range 3 {
		appendGRPC(t, tl.api, fmt.Sprintf("m%d", i))
	}
	tl.waitForSize(t, tl.vkey, 3)
	tl.get(t, "/tile/entries/000.p/3")
	if v := os.Getenv("AWS_EC2_METADATA_DISABLED"); v != "false" {
		t.Errorf("the library changed the process environment: AWS_EC2_METADATA_DISABLED=%q", v)
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("%d requests reached the instance metadata stand-in", n)
	}
}
