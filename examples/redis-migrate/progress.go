package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redismigrate/migrate"
)

// progress draws a bar on a terminal, and prints a plain line every few seconds elsewhere.
type progress struct {
	w        io.Writer
	terminal bool
	mu       sync.Mutex
	last     time.Time
	drawn    bool

	following    bool // the copy is done and the target follows the source
	lastCommands int64
	lastAt       time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progress) update(pr migrate.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.terminal && !pr.Done && time.Since(p.last) < 2*time.Second {
		return
	}
	p.last = time.Now()
	if pr.Following {
		p.follow(pr)
		return
	}
	done := pr.Keys + pr.Skipped + pr.Expired + pr.Failed
	rate := float64(done) / max(pr.Elapsed.Seconds(), 0.001)
	eta := "?"
	if pr.Total > done && rate > 0 {
		eta = (time.Duration(float64(pr.Total-done)/rate) * time.Second).Round(time.Second).String()
	} else if pr.Total > 0 {
		eta = "0s"
	}
	line := fmt.Sprintf("%s: %d/%d keys, %.0f keys/s, %s copied, ETA %s",
		pr.Strategy, done, pr.Total, rate, mb(pr.Bytes), eta)
	if !p.terminal {
		fmt.Fprintln(p.w, line)
		return
	}
	const width = 30
	filled := width
	if pr.Total > 0 && done < pr.Total {
		filled = int(float64(width) * float64(done) / float64(pr.Total))
	}
	fmt.Fprintf(p.w, "\r[%s%s] %s\x1b[K", strings.Repeat("#", filled), strings.Repeat(".", width-filled), line)
	p.drawn = true
}

// follow prints the line of a following migration: how far the target is behind the
// source, and how fast it applies the source's writes.
func (p *progress) follow(pr migrate.Progress) {
	if !p.following {
		p.following = true
		if p.drawn {
			fmt.Fprintln(p.w)
			p.drawn = false
		}
	}
	rate := 0.0
	if !p.lastAt.IsZero() {
		rate = float64(pr.Commands-p.lastCommands) / max(time.Since(p.lastAt).Seconds(), 0.001)
	}
	p.lastCommands, p.lastAt = pr.Commands, time.Now()
	line := fmt.Sprintf("following: lag %s, %s; %d commands applied, %.0f/s",
		bytesText(pr.LagBytes), pr.LagAge.Round(time.Millisecond), pr.Commands, rate)
	if pr.Strategy == "dump-restore" {
		line = fmt.Sprintf("following: %d keys waiting, the oldest for %s; %d keys copied again, %.0f/s",
			pr.LagKeys, pr.LagAge.Round(time.Millisecond), pr.Commands, rate)
	}
	if !p.terminal {
		fmt.Fprintln(p.w, line)
		return
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.drawn = true
}

// followed reports whether the copy finished and following began.
func (p *progress) followed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.following
}

func bytesText(n int64) string {
	switch {
	case n >= 1e6:
		return mb(n)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}

// finish ends the bar's line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
