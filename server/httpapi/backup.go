package httpapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/tenants"
)

// maxRestoreBytes bounds a restore's body: a backup holds every tenant's
// permanent instances, more than one request's 1 MiB.
const maxRestoreBytes = 256 << 20

// backup answers the cluster's durable state (api.Backup), read after a
// ReadIndex on the meta shard and on each tenant's shard, so that it holds
// every write acknowledged before the request.
func (s *Server) backup(w http.ResponseWriter, r *http.Request, _ identity) {
	ctx, cancel := s.writeCtx(r)
	err := s.node.SyncMeta(ctx)
	cancel()
	if err != nil {
		writeError(w, err)
		return
	}
	now := time.Now()
	mb := s.node.Meta().Backup()
	b := api.Backup{Version: api.BackupVersion, CreatedAt: now.UTC(), Index: mb.Applied,
		NextShardID: mb.NextShardID, NextReplicaID: mb.NextReplica, Epochs: mb.Epochs, Tenants: []api.BackupTenant{}}
	for _, rec := range mb.Tenants {
		t, ok := s.node.Tenant(rec.Name)
		if !ok || t.ShardID != rec.ShardID {
			writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
				Message: fmt.Sprintf("backup: tenant %s: its shard is starting on this node", rec.Name)})
			return
		}
		ctx, cancel := s.writeCtx(r)
		err := t.ReadIndex(ctx)
		cancel()
		if err != nil {
			writeError(w, err)
			return
		}
		services, _ := t.SM.Durable()
		bt := api.BackupTenant{Name: rec.Name, Epoch: rec.Epoch, Quotas: rec.Quotas,
			TokenHash: rec.Credentials.Current.String(), CreatedAt: time.UnixMilli(rec.CreatedMs).UTC(), Services: services}
		if c := rec.Credentials; c.Previous != nil && now.Before(c.PreviousValidUntil) {
			bt.PreviousTokenHash, bt.PreviousValidUntil = c.Previous.String(), c.PreviousValidUntil.UTC()
		}
		b.Tenants = append(b.Tenants, bt)
	}
	setIndex(w, mb.Applied)
	writeJSON(w, http.StatusOK, b)
}

// restore creates a backup's tenants in a cluster that has none (one meta
// entry), then writes each tenant's policies and permanent instances
// through its shard. Every step is idempotent: a restore that failed half
// way is finished by sending it again.
func (s *Server) restore(w http.ResponseWriter, r *http.Request, _ identity) {
	cmd, backup, err := parseRestore(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := s.writeCtx(r)
	cmd.Members, err = s.node.MetaMembers(ctx)
	if err == nil {
		cmd.NowMs = time.Now().UnixMilli()
		_, err = s.node.ProposeMeta(ctx, fsm.Encode(fsm.OpRestore, cmd))
	}
	cancel()
	if err != nil {
		writeError(w, err)
		return
	}
	resp := api.RestoreResponse{Tenants: len(backup)}
	for _, bt := range backup {
		ctx, cancel := s.writeCtx(r)
		s.awaitTenant(ctx, bt.Name)
		cancel()
		t, ok := s.node.Tenant(bt.Name)
		if !ok {
			writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
				Message: fmt.Sprintf("restore: tenant %s: its shard is not running on this node yet; send the restore again", bt.Name)})
			return
		}
		propose := func(what string, op fsm.Op, c any) bool {
			ctx, cancel := s.writeCtx(r)
			defer cancel()
			if _, err := proposeTo(ctx, t, op, c); err != nil {
				writeError(w, prefixed(fmt.Sprintf("restore: tenant %s: %s: ", bt.Name, what), err))
				return false
			}
			return true
		}
		now := time.Now().UnixMilli()
		for _, svc := range bt.Services {
			if svc.Policy != nil {
				if !propose("service "+svc.Name+": policy", fsm.OpSetPolicy, fsm.SetPolicy{Service: svc.Name, ColdStart: *svc.Policy, AtMs: now}) {
					return
				}
				resp.Policies++
			}
			for _, in := range svc.Instances {
				weight := in.Weight
				reg := api.RegisterRequest{Address: in.Address, Mode: in.Mode, State: in.State, Weight: &weight,
					Priority: in.Priority, Zone: in.Zone, Meta: in.Meta}
				if !propose("instance "+svc.Name+"/"+in.ID, fsm.OpRegister, fsm.Register{Service: svc.Name, ID: in.ID, Instance: reg, AtMs: now}) {
					return
				}
				resp.Instances++
			}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// prefixed puts context before an error's message, keeping its code.
func prefixed(prefix string, err error) error {
	if e, ok := err.(*api.Error); ok {
		c := *e
		c.Message = prefix + c.Message
		return &c
	}
	return fmt.Errorf("%s%w", prefix, err)
}

// parseRestore reads and checks a backup (api.Backup) for POST /v1/restore.
func parseRestore(w http.ResponseWriter, r *http.Request) (fsm.Restore, []api.BackupTenant, error) {
	var b api.Backup
	if err := decodeUpTo(w, r, &b, false, maxRestoreBytes); err != nil {
		return fsm.Restore{}, nil, err
	}
	return checkBackup(b)
}

// checkBackup validates a decoded backup and makes the meta command that
// restores its tenants.
func checkBackup(b api.Backup) (fsm.Restore, []api.BackupTenant, error) {
	if b.Version != api.BackupVersion {
		return fsm.Restore{}, nil, api.BadField("version", "%d is not a backup version this server reads (%d)", b.Version, api.BackupVersion)
	}
	cmd := fsm.Restore{NextShardID: b.NextShardID, NextReplicaID: b.NextReplicaID, Epochs: map[string]uint64{}}
	for name, e := range b.Epochs {
		if err := api.ValidateTenantName("epochs", name); err != nil {
			return fsm.Restore{}, nil, err
		}
		cmd.Epochs[name] = e
	}
	seen := map[string]bool{}
	for i, t := range b.Tenants {
		field := fmt.Sprintf("tenants[%d]", i)
		if err := api.ValidateTenantName(field+".name", t.Name); err != nil {
			return fsm.Restore{}, nil, err
		}
		if seen[t.Name] {
			return fsm.Restore{}, nil, api.BadField(field+".name", "tenant %s is named twice", t.Name)
		}
		seen[t.Name] = true
		quotas, err := tenants.Resolve(t.Quotas)
		if err != nil {
			return fsm.Restore{}, nil, prefixed(field+": ", err)
		}
		cur, err := tenants.ParseHash(t.TokenHash)
		if err != nil || cur.IsZero() {
			return fsm.Restore{}, nil, api.BadField(field+".token_hash", "want 64 hexadecimal digits")
		}
		creds := tenants.Credentials{Current: cur}
		if t.PreviousTokenHash != "" {
			prev, err := tenants.ParseHash(t.PreviousTokenHash)
			if err != nil {
				return fsm.Restore{}, nil, api.BadField(field+".previous_token_hash", "want 64 hexadecimal digits")
			}
			creds.Previous, creds.PreviousValidUntil = &prev, t.PreviousValidUntil
		}
		// The restored tenant's epoch is above the one it had: its fencing
		// tokens are above every token issued before.
		cmd.Epochs[t.Name] = max(cmd.Epochs[t.Name], t.Epoch)
		cmd.Tenants = append(cmd.Tenants, fsm.RestoreTenant{Name: t.Name, Quotas: quotas, Credentials: creds,
			CreatedMs: t.CreatedAt.UnixMilli()})
		services := map[string]bool{}
		for j, svc := range t.Services {
			sf := fmt.Sprintf("%s.services[%d]", field, j)
			if err := api.ValidateName(sf+".name", svc.Name); err != nil {
				return fsm.Restore{}, nil, err
			}
			if services[svc.Name] {
				return fsm.Restore{}, nil, api.BadField(sf+".name", "service %s is named twice", svc.Name)
			}
			services[svc.Name] = true
			for k, in := range svc.Instances {
				inf := fmt.Sprintf("%s.instances[%d]", sf, k)
				if err := api.ValidateName(inf+".id", in.ID); err != nil {
					return fsm.Restore{}, nil, err
				}
				if in.SessionTag != "" {
					return fsm.Restore{}, nil, api.BadField(inf+".session_tag", "a backup holds permanent instances only")
				}
				if in.Meta != nil && tenants.MetaSize(in.Meta) > api.MaxBodyBytes {
					return fsm.Restore{}, nil, api.BadField(inf+".meta", "too large")
				}
			}
		}
	}
	return cmd, b.Tenants, nil
}
