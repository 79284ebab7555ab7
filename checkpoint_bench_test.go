package migrate

import "testing"

// BenchmarkCheckpointBatch measures what WithCheckpoint adds to each batch of a walk: the
// walk records it (emitted) and the strategy reports it written (batchWritten).
func BenchmarkCheckpointBatch(b *testing.B) {
	c := &checkpointer{}
	c.walkStart(0)
	batches := make([][]string, 64)
	for i := range batches {
		batches[i] = make([]string, 256)
	}
	b.ResetTimer()
	for i := range b.N {
		keys := batches[i%len(batches)]
		c.emitted(keys, walkPosition{Cursor: uint64(i)})
		c.batchWritten(keys)
	}
}

// BenchmarkCheckpointSave measures one save of a checkpoint to a CheckpointFile, which the
// background does every checkpointEvery while the walk moves on.
func BenchmarkCheckpointSave(b *testing.B) {
	c := &checkpointer{store: CheckpointFile(b.TempDir() + "/checkpoint.json"), st: checkpointState{Version: checkpointVersion,
		Databases: []int{0, 3}, Walk: &walkPosition{DB: 3, Cursor: 123456}}}
	for range b.N {
		if err := c.save(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
