package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// KeySlot returns the cluster hash slot of key (CRC16 of the key or of its hash tag, modulo
// 16384), as the servers compute it.
func KeySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc & 16383)
}

// SlotTag returns a hash tag, "{...}", that puts any key holding it into slot.
func SlotTag(slot int) string {
	for n := 0; ; n++ {
		tag := strconv.Itoa(n)
		if KeySlot(tag) == slot {
			return "{" + tag + "}"
		}
	}
}

// conns are clients of the nodes of a cluster, opened on first use, and their ids.
type conns struct {
	clients map[*Server]rueidis.Client
	ids     map[*Server]string
}

func newConns() *conns {
	return &conns{clients: map[*Server]rueidis.Client{}, ids: map[*Server]string{}}
}

func (cs *conns) do(ctx context.Context, s *Server, args ...string) rueidis.RedisResult {
	cl, ok := cs.clients[s]
	if !ok {
		var err error
		if cl, err = s.Connect(0); err != nil {
			return rueidis.RedisResult{}
		}
		cs.clients[s] = cl
	}
	return cl.Do(ctx, cl.B().Arbitrary(args[0]).Args(args[1:]...).Build())
}

// id returns the node id of s.
func (cs *conns) id(ctx context.Context, s *Server) (string, error) {
	if id, ok := cs.ids[s]; ok {
		return id, nil
	}
	id, err := cs.do(ctx, s, "CLUSTER", "MYID").ToString()
	if err != nil {
		return "", fmt.Errorf("CLUSTER MYID on %s: %w", s.Addr, err)
	}
	cs.ids[s] = id
	return id, nil
}

func (cs *conns) close() {
	for _, cl := range cs.clients {
		cl.Close()
	}
}

// OpenSlot starts moving slot from master from to master to, as a reshard does before it
// moves the slot's keys: CLUSTER SETSLOT IMPORTING on to, then MIGRATING on from.
func (c *Cluster) OpenSlot(ctx context.Context, slot int, from, to *Server) error {
	cs := newConns()
	defer cs.close()
	return c.openSlot(ctx, cs, slot, from, to)
}

func (c *Cluster) openSlot(ctx context.Context, cs *conns, slot int, from, to *Server) error {
	fromID, err := cs.id(ctx, from)
	if err != nil {
		return err
	}
	toID, err := cs.id(ctx, to)
	if err != nil {
		return err
	}
	s := strconv.Itoa(slot)
	for _, step := range []struct {
		node *Server
		args []string
	}{
		{to, []string{"CLUSTER", "SETSLOT", s, "IMPORTING", fromID}},
		{from, []string{"CLUSTER", "SETSLOT", s, "MIGRATING", toID}},
	} {
		if err := cs.do(ctx, step.node, step.args...).Error(); err != nil {
			return fmt.Errorf("%s on %s: %w", strings.Join(step.args, " "), step.node.Addr, err)
		}
	}
	return nil
}

// FinishSlot ends the move of slot from master from to master to that OpenSlot started, as
// a reshard does: it moves the slot's keys with MIGRATE ... KEYS, 100 at a time, then gives
// the slot to to with CLUSTER SETSLOT NODE on to, from, and every other master.
func (c *Cluster) FinishSlot(ctx context.Context, slot int, from, to *Server) error {
	cs := newConns()
	defer cs.close()
	return c.finishSlot(ctx, cs, slot, from, to)
}

func (c *Cluster) finishSlot(ctx context.Context, cs *conns, slot int, from, to *Server) error {
	toID, err := cs.id(ctx, to)
	if err != nil {
		return err
	}
	s := strconv.Itoa(slot)
	host, port, _ := strings.Cut(to.Addr, ":")
	for {
		keys, err := cs.do(ctx, from, "CLUSTER", "GETKEYSINSLOT", s, "100").AsStrSlice()
		if err != nil {
			return fmt.Errorf("CLUSTER GETKEYSINSLOT %s on %s: %w", s, from.Addr, err)
		}
		if len(keys) == 0 {
			break
		}
		args := []string{"MIGRATE", host, port, "", "0", "5000", "REPLACE"}
		if c.Password != "" {
			args = append(args, "AUTH", c.Password)
		}
		args = append(append(args, "KEYS"), keys...)
		if err := cs.do(ctx, from, args...).Error(); err != nil {
			return fmt.Errorf("MIGRATE of slot %s from %s to %s: %w", s, from.Addr, to.Addr, err)
		}
	}
	nodes := []*Server{to, from}
	for _, m := range c.Masters {
		if m != to && m != from && !m.Stopped() {
			nodes = append(nodes, m)
		}
	}
	for _, n := range nodes {
		if err := cs.do(ctx, n, "CLUSTER", "SETSLOT", s, "NODE", toID).Error(); err != nil {
			return fmt.Errorf("CLUSTER SETSLOT %s NODE on %s: %w", s, n.Addr, err)
		}
	}
	return nil
}

// MoveSlots moves slots lo to hi from master from to master to, keys included (OpenSlot,
// then FinishSlot): a reshard. It keeps two slots open at a time, as two reshards running
// at once would: each slot is opened, then after pause the previous one is finished.
func (c *Cluster) MoveSlots(ctx context.Context, lo, hi int, from, to *Server, pause time.Duration) error {
	cs := newConns()
	defer cs.close()
	for slot := lo; slot <= hi+1; slot++ {
		if slot <= hi {
			if err := c.openSlot(ctx, cs, slot, from, to); err != nil {
				return err
			}
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return ctx.Err()
		}
		if slot > lo {
			if err := c.finishSlot(ctx, cs, slot-1, from, to); err != nil {
				return err
			}
		}
	}
	return nil
}
