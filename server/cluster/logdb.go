package cluster

import (
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	dbconfig "github.com/lni/dragonboat/v4/config"
)

func logDBPreset(name string) dbconfig.LogDBConfig {
	switch name {
	case "tiny":
		return dbconfig.GetTinyMemLogDBConfig()
	case "medium":
		return dbconfig.GetMediumMemLogDBConfig()
	case "default":
		return dbconfig.GetDefaultLogDBConfig()
	}
	return dbconfig.GetSmallMemLogDBConfig()
}

// logDBShards is how many pebble instances the node's LogDB keeps under
// dir: as many as the data dir was made with (Dragonboat records the count
// and refuses to open a dir with another; a dir made before this rule has
// 16), else one. With one, every shard on the node writes to one WAL, and
// one fsync covers all the tenants' entries waiting at that moment; with
// Dragonboat's default of 16, shards are spread over 16 WALs by shard ID,
// each synced on its own to the same disk, and a tenant's writes queue
// behind another's syncs (docs/DECISIONS.md, "Raft transport").
func logDBShards(dir string) uint64 {
	n := 0
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if i, ok := strings.CutPrefix(d.Name(), "logdb-"); ok {
			if k, err := strconv.Atoi(i); err == nil {
				n = max(n, k+1)
			}
			return filepath.SkipDir
		}
		return nil
	})
	return uint64(max(n, 1))
}
