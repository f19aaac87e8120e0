package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

// BenchmarkCallTask is BenchmarkCall's tiny tool (text.wc, SQLite with
// synchronous=normal) submitted without a task and within one: what naming
// a task adds to an allowed call (checking that the task is open, its call
// count for CEL's task.call_count, the count's update in the commit).
func BenchmarkCallTask(b *testing.B) {
	root := testenv.Root(b)
	x := testenv.Start(b, testenv.Options{
		Manifests: testenv.BundledManifests(b),
		Policies:  filepath.Join(root, "manifests", "policies"),
		StoreSync: "normal",
		Quiet:     true,
	})
	ctx := context.Background()
	task, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "bench", TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	c := cases[0]
	for _, p := range []struct {
		path string
		opts []client.SubmitOption
	}{{"notask", nil}, {"task", []client.SubmitOption{client.WithTask(task.GetId())}}} {
		b.Run("tool="+c.name+"/path="+p.path, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				out, err := x.Client.Submit(ctx, c.tool, c.args, p.opts...)
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				if out.GetStatus() != airlockv1.Status_STATUS_OK {
					b.Fatalf("%s: %v %v", c.tool, out.GetStatus(), out.GetError())
				}
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}
