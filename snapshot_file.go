package migrate

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

func (s Snapshot) checkToFile(ctx context.Context, j *Job) error {
	if j.Filtered {
		return fmt.Errorf("ToFile writes a dump of every key of every database, so it cannot honour WithMatch, WithTypes, WithDatabases or the source's SelectDB; drop them, or leave ToFile empty to restore only what they select: %w", ErrUnsupported)
	}
	if err := checkDatabaseSetting(ctx, j, true); err != nil {
		return err
	}
	var keys int64
	for _, n := range j.Target.Info.Keyspace {
		keys += n
	}
	if keys > 0 && !j.DiscardTarget {
		return j.Target.Err("check keys", "", unsupported(
			"the target holds %d key(s), which loading the dump of ToFile would discard; pass migrate.WithDiscardTarget() to allow it", keys))
	}
	f, err := os.CreateTemp(filepath.Dir(s.ToFile), ".migrate-probe-*")
	if err != nil {
		return fmt.Errorf("ToFile %s: its directory is not writable; choose another path or fix its permissions: %w", s.ToFile, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// fileRDBVersion reads the RDB version from the header of the file at path: "REDIS" and
// 4 digits, or "VALKEY" and 3 (Valkey 9).
func fileRDBVersion(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("FromFile %s cannot be read; check the path and its permissions: %w", path, err)
	}
	defer f.Close()
	var hdr [9]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return 0, fmt.Errorf("FromFile %s is not an RDB file (it does not start with REDIS or VALKEY and a version): %w", path, ErrCorruptRDB)
	}
	v, _, err := parseRDBHeader(hdr[:])
	if err != nil {
		return 0, fmt.Errorf("FromFile %s: %w", path, err)
	}
	return v, nil
}

// write copies the snapshot to ToFile, checking it by reading it as it goes, and calls Load.
func (s Snapshot) write(ctx context.Context, j *Job, in *snapshotInput) error {
	defer context.AfterFunc(ctx, in.Close)()
	dir := filepath.Dir(s.ToFile)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.ToFile)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create a file beside ToFile %s: %w", s.ToFile, err)
	}
	written := false
	defer func() {
		if !written {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	tee := &teeReader{r: in, w: tmp}
	rd := NewRDBReader(tee)
	counts := map[int]*Counts{}
	var pending int64 // entries read and not yet counted as Scanned
	pendingDB := 0
	countScanned := func() {
		if pending > 0 {
			j.Count(pendingDB, Counts{Scanned: pending})
			pending = 0
		}
	}
	for {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if tee.err != nil {
			return fmt.Errorf("write %s: %w", tmp.Name(), tee.err)
		}
		if err != nil {
			return in.fail("read", ctxErr(ctx, err))
		}
		if e.Kind != RDBKey {
			continue
		}
		if pending > 0 && (e.DB != pendingDB || pending == 1024) {
			if err := j.Wait(ctx, int(pending)); err != nil {
				return err
			}
			countScanned()
		}
		pendingDB = e.DB
		pending++
		c := counts[e.DB]
		if c == nil {
			c = &Counts{}
			counts[e.DB] = c
		}
		if e.ExpireAtMs > 0 && e.ExpireAtMs <= time.Now().UnixMilli() {
			c.Expired++
		} else {
			c.Keys++
			c.Bytes += int64(len(e.Payload))
		}
	}
	countScanned()
	if err := finish(rd, in); err != nil {
		return err
	}
	if tee.err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), tee.err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), s.ToFile); err != nil {
		return fmt.Errorf("rename %s to ToFile %s: %w", tmp.Name(), s.ToFile, err)
	}
	written = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename survives a crash
		d.Close()
	}
	j.Logger.Info("snapshot: dump written", "path", s.ToFile, "bytes", rd.Offset(), "rdb_version", rd.Version())
	// Counted once the file is complete, and loaded where Load loads it: a failed transfer,
	// or a failed Load, copied nothing the Report can vouch for.
	countKeys := func() {
		for db, c := range counts {
			j.Count(db, Counts{Keys: c.Keys, Bytes: c.Bytes, Expired: c.Expired})
		}
	}
	if s.Load == nil {
		countKeys()
		return nil
	}
	if err := s.Load(ctx, s.ToFile); err != nil {
		return j.Target.Err("load "+s.ToFile, "", fmt.Errorf("the Load hook failed: %w", err))
	}
	countKeys()
	j.Logger.Info("snapshot: Load hook done", "path", s.ToFile)
	return nil
}

// teeReader writes to w what it reads from r, and remembers the first write error.
type teeReader struct {
	r   io.Reader
	w   io.Writer
	err error
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 && t.err == nil {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.err = werr
			return n, werr
		}
	}
	return n, err
}

// bgsave makes the source save its data and waits until that save is complete. It returns
// when the save was asked for.
func bgsave(ctx context.Context, j *Job) (time.Time, error) {
	e := j.Source
	c, err := e.Default()
	if err != nil {
		return time.Time{}, err
	}
	before, err := persistence(ctx, c)
	if err != nil {
		return time.Time{}, e.Err("info persistence", "", ctxErr(ctx, err))
	}
	asked := time.Now()
	for {
		// SCHEDULE (Redis 3.2.2): when an AOF rewrite runs, the save starts after it.
		err := c.Do(ctx, c.B().Bgsave().Schedule().Build()).Error()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return time.Time{}, e.Err("bgsave", "", ctx.Err())
		}
		if classifyReply(err) != replyInProgress {
			if r := refusal(ctx, e, "BGSAVE", err); r != nil {
				return time.Time{}, r
			}
			return time.Time{}, e.Err("bgsave", "", err)
		}
		// Someone else's save is running: it may predate writes we must see; wait, then ask.
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return time.Time{}, e.Err("bgsave", "", err)
		}
	}
	j.Logger.Info("snapshot: BGSAVE asked on the source", "source", e.Addr)
	for {
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return time.Time{}, e.Err("wait for bgsave", "", err)
		}
		now, err := persistence(ctx, c)
		if err != nil {
			return time.Time{}, e.Err("info persistence", "", ctxErr(ctx, err))
		}
		if now.inProgress {
			continue
		}
		newer := now.saves > before.saves
		if before.saves < 0 || now.saves < 0 { // before Redis 7.0: LASTSAVE's seconds
			newer = now.lastSave > before.lastSave
		}
		if !newer {
			continue
		}
		if now.status != "ok" {
			return time.Time{}, e.Err("bgsave", "", fmt.Errorf("the source's BGSAVE failed (rdb_last_bgsave_status:%s); see its log", now.status))
		}
		return asked, nil
	}
}

type persistenceInfo struct {
	inProgress bool
	saves      int64 // rdb_saves, -1 when the server does not say
	lastSave   int64
	status     string
}

func persistence(ctx context.Context, c rueidis.Client) (persistenceInfo, error) {
	text, err := c.Do(ctx, c.B().Info().Section("persistence").Build()).ToString()
	if err != nil {
		return persistenceInfo{}, err
	}
	f := parseInfo(text).Fields
	p := persistenceInfo{inProgress: f["rdb_bgsave_in_progress"] == "1", saves: -1, status: f["rdb_last_bgsave_status"]}
	if v, ok := f["rdb_saves"]; ok {
		p.saves, _ = strconv.ParseInt(v, 10, 64)
	}
	p.lastSave, _ = strconv.ParseInt(f["rdb_last_save_time"], 10, 64)
	return p, nil
}
