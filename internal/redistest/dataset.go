package redistest

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"
)

// DatasetDBs are the databases Fill writes to.
var DatasetDBs = []int{0, 3, 15}

// Dataset says how big the conformance data set is. The zero value is the full set.
type Dataset struct {
	// Small leaves out the 10 MB value and the 5,000-element collections, for tests whose
	// point is not the data itself.
	Small bool
	// DBs are the databases whose data sets are written; default DatasetDBs.
	DBs []int
}

func (d Dataset) dbs() []int {
	if len(d.DBs) > 0 {
		return d.DBs
	}
	return DatasetDBs
}

// Fill writes the conformance data set into databases 0, 3 and 15 of s (d.DBs when set),
// each database's keys prefixed "dbN:": every type and
// encoding (strings int/embstr/raw/empty/binary, lists, sets, sorted sets and hashes both
// small and large, streams with consumer groups and pending entries, HyperLogLogs sparse and
// dense, bitmaps, geo sets), TTLs, binary and unicode key names, an empty value, a 10 MB value
// and 5,000-element collections. It returns the number of keys written per database.
func Fill(t testing.TB, s *Server, d Dataset) map[int]int {
	t.Helper()
	counts, err := Load(context.Background(), s, d)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return counts
}

// Load is Fill for programs that are not tests.
func Load(ctx context.Context, s *Server, d Dataset) (map[int]int, error) {
	counts := map[int]int{}
	for _, db := range d.dbs() {
		c, err := s.Connect(db)
		if err != nil {
			return nil, err
		}
		cmds := datasetCommands(c, db, d)
		for i, r := range c.DoMulti(ctx, cmds.list...) {
			if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
				c.Close()
				return nil, fmt.Errorf("fill db %d: %v: %w", db, cmds.list[i].Commands()[0], err)
			}
		}
		c.Close()
		counts[db] = len(cmds.keys)
	}
	return counts, nil
}

type commandList struct {
	list rueidis.Commands
	keys map[string]bool
}

func (l *commandList) add(key string, cmd rueidis.Completed) {
	l.list = append(l.list, cmd)
	l.keys[key] = true
}

func datasetCommands(c rueidis.Client, db int, d Dataset) *commandList {
	rnd := rand.New(rand.NewSource(int64(db) + 1))
	l := &commandList{keys: map[string]bool{}}
	p := fmt.Sprintf("db%d:", db)
	b := c.B()

	// Strings of every encoding.
	l.add(p+"str:int", b.Set().Key(p+"str:int").Value("12345").Build())
	l.add(p+"str:negint", b.Set().Key(p+"str:negint").Value("-9223372036854775808").Build())
	l.add(p+"str:embstr", b.Set().Key(p+"str:embstr").Value("hello world").Build())
	l.add(p+"str:raw", b.Set().Key(p+"str:raw").Value(strings.Repeat("raw-", 40)).Build())
	l.add(p+"str:compressible", b.Set().Key(p+"str:compressible").Value(strings.Repeat("a", 5000)).Build())
	l.add(p+"str:empty", b.Set().Key(p+"str:empty").Value("").Build())
	l.add(p+"str:float", b.Set().Key(p+"str:float").Value("3.14159").Build())
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	l.add(p+"str:binary", b.Set().Key(p+"str:binary").Value(string(all)).Build())
	l.add(p+"str:unicode", b.Set().Key(p+"str:unicode").Value("значение ✓ 値 🚀").Build())
	// Binary and unicode key names.
	for _, k := range []string{p + "bin:\x00\xff\r\n key", p + "ключ:🔑:日本語", p + "\x00", p + " spaced key "} {
		l.add(k, b.Set().Key(k).Value("odd name").Build())
	}
	// HyperLogLog, sparse and dense; bitmap; geo.
	l.add(p+"hll:sparse", b.Pfadd().Key(p+"hll:sparse").Element("a", "b", "c").Build())
	dense := make([]string, 3000)
	for i := range dense {
		dense[i] = "e" + strconv.Itoa(i)
	}
	l.add(p+"hll:dense", b.Pfadd().Key(p+"hll:dense").Element(dense...).Build())
	for _, bit := range []int64{0, 7, 100, 99999} {
		l.add(p+"bitmap", b.Setbit().Key(p+"bitmap").Offset(bit).Value(1).Build())
	}
	l.add(p+"geo", b.Geoadd().Key(p+"geo").LongitudeLatitudeMember().
		LongitudeLatitudeMember(13.361389, 38.115556, "Palermo").
		LongitudeLatitudeMember(15.087269, 37.502669, "Catania").
		LongitudeLatitudeMember(2.3522, 48.8566, "Paris").Build())

	// Small collections (listpack/intset encodings) and a hash-table encoded set.
	l.add(p+"list:small", b.Rpush().Key(p+"list:small").Element("a", "b", "", "1", "-2", strings.Repeat("x", 70)).Build())
	l.add(p+"set:ints", b.Sadd().Key(p+"set:ints").Member("1", "2", "3", "-100", "100000", "6000000000").Build())
	l.add(p+"set:small", b.Sadd().Key(p+"set:small").Member("a", "b", "c", "ключ").Build())
	l.add(p+"zset:small", b.Zadd().Key(p+"zset:small").ScoreMember().ScoreMember(1, "a").ScoreMember(2.5, "b").ScoreMember(-3, "c").Build())
	l.add(p+"zset:inf", b.Zadd().Key(p+"zset:inf").ScoreMember().ScoreMember(math.Inf(1), "top").ScoreMember(math.Inf(-1), "bottom").ScoreMember(0, "zero").Build())
	l.add(p+"hash:small", b.Hset().Key(p+"hash:small").FieldValue().FieldValue("f1", "v1").FieldValue("f2", "").FieldValue("", "empty field").Build())

	// Large collections: 5,000 elements (quicklist, hashtable, skiplist, big stream).
	n := 5000
	if d.Small || db != 0 {
		n = 300
	}
	list, set, zset, hash := b.Rpush().Key(p+"list:big").Element(), b.Sadd().Key(p+"set:big").Member(), b.Zadd().Key(p+"zset:big").ScoreMember(), b.Hset().Key(p+"hash:big").FieldValue()
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("member-%d-%d", i, rnd.Intn(1000000))
		list = list.Element(v)
		set = set.Member(v)
		zset = zset.ScoreMember(rnd.Float64()*1000, v)
		hash = hash.FieldValue("field-"+strconv.Itoa(i), v)
	}
	l.add(p+"list:big", list.Build())
	l.add(p+"set:big", set.Build())
	l.add(p+"zset:big", zset.Build())
	l.add(p+"hash:big", hash.Build())

	// Streams: entries, deletions, two consumer groups, consumers, pending entries.
	s := p + "stream"
	for i := 0; i < 50; i++ {
		l.add(s, b.Xadd().Key(s).Id(fmt.Sprintf("%d-%d", 1700000000000+i, i%3)).FieldValue().FieldValue("n", strconv.Itoa(i)).FieldValue("payload", strings.Repeat("p", i)).Build())
	}
	l.add(s, b.Xtrim().Key(s).Maxlen().Threshold("45").Build())
	l.add(s, b.XgroupCreate().Key(s).Group("g1").Id("0").Build())
	l.add(s, b.XgroupCreate().Key(s).Group("g2").Id("$").Build())
	l.add(s, b.Xreadgroup().Group("g1", "alice").Count(10).Streams().Key(s).Id(">").Build())
	l.add(s, b.Xreadgroup().Group("g1", "bob").Count(5).Streams().Key(s).Id(">").Build())
	l.add(s, b.XgroupCreateconsumer().Key(s).Group("g2").Consumer("idle").Build())
	bs := p + "stream:big"
	for i := 0; i < n; i++ {
		l.add(bs, b.Xadd().Key(bs).Id(fmt.Sprintf("%d-%d", 1000+i/10, i%10)).FieldValue().FieldValue("i", strconv.Itoa(i)).Build())
	}
	l.add(p+"stream:empty", b.XgroupCreate().Key(p+"stream:empty").Group("g").Id("$").Mkstream().Build())

	// TTLs: long, short, on every type.
	for i, k := range []string{"str:ttl", "list:ttl", "hash:ttl", "zset:ttl"} {
		k = p + k
		switch i {
		case 0:
			l.add(k, b.Set().Key(k).Value("expiring").Build())
		case 1:
			l.add(k, b.Rpush().Key(k).Element("x").Build())
		case 2:
			l.add(k, b.Hset().Key(k).FieldValue().FieldValue("f", "v").Build())
		case 3:
			l.add(k, b.Zadd().Key(k).ScoreMember().ScoreMember(1, "m").Build())
		}
		l.add(k, b.Pexpire().Key(k).Milliseconds(int64(3600_000*(i+1))).Build())
	}
	for i := 0; i < 20; i++ {
		k := p + "ttl:" + strconv.Itoa(i)
		l.add(k, b.Set().Key(k).Value(strconv.Itoa(i)).Build())
		l.add(k, b.Pexpire().Key(k).Milliseconds(int64(600_000+i*1000)).Build())
	}
	if !d.Small && db == 0 {
		big := make([]byte, 10<<20)
		rnd.Read(big)
		l.add(p+"str:10mb", b.Set().Key(p+"str:10mb").Value(string(big)).Build())
	}
	return l
}
