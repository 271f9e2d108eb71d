package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// transferLeaders moves leaderships (POST /v1/cluster/leaders): one
// shard's, named by its ID or its tenant, to a node or to any other; or
// every one a node holds, before it is stopped for maintenance or removed.
// It answers the cluster as it is after.
func (s *Server) transferLeaders(w http.ResponseWriter, r *http.Request, _ identity) {
	var req api.LeaderTransferRequest
	if err := decode(w, r, &req, false); err != nil {
		writeError(w, err)
		return
	}
	one := req.Shard != 0 || req.Tenant != ""
	switch {
	case req.Shard != 0 && req.Tenant != "":
		writeError(w, api.BadField("shard", "give shard or tenant, not both"))
		return
	case one && req.From != 0:
		writeError(w, api.BadField("from", "moves every leadership of a node: give it without shard or tenant"))
		return
	case !one && req.From == 0:
		writeError(w, api.BadField("shard", "give shard or tenant (one shard), or from (every leadership of a node)"))
		return
	case req.To >= fsm.FirstReplicaID || req.From >= fsm.FirstReplicaID:
		writeError(w, api.BadField("to", "a node ID is below %d", fsm.FirstReplicaID))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	var err error
	if one {
		shard := req.Shard
		if req.Tenant != "" {
			var ok bool
			if shard, ok = s.node.ShardOf(req.Tenant); !ok {
				writeError(w, api.Errorf(api.CodeNotFound, "no tenant %q", req.Tenant))
				return
			}
		}
		_, err = s.node.TransferLeader(ctx, shard, req.To)
	} else {
		_, err = s.node.MoveLeadersOff(ctx, req.From)
	}
	if err != nil {
		var e *api.Error
		if !errors.As(err, &e) {
			err = api.Errorf(api.CodeUnavailable, "transfer leaders: %v", err)
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.node.Cluster())
}
