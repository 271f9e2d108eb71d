package sdk

// A position orders what the servers say of a tenant across its
// incarnations: the tenant's epoch above the Raft index, as in fencing
// tokens (epoch<<40 | index). A tenant created again under its name, or
// restored from a backup, starts its Raft log over with a higher epoch;
// comparing positions instead of indexes, the SDK takes the new log's
// answers as newer instead of dropping them as old ones. An answer without
// an epoch (X-Rafting-Epoch; a server from before epochs) is at epoch 0.
const epochShift = 40

func position(epoch, index uint64) uint64 {
	if epoch >= 1<<(64-epochShift) {
		epoch = 0 // no such epoch: an answer from a broken server, ordered by index alone
	}
	return epoch<<epochShift | index&(1<<epochShift-1)
}

func epochOf(pos uint64) uint64 { return pos >> epochShift }
func indexOf(pos uint64) uint64 { return pos & (1<<epochShift - 1) }
