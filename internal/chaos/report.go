package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// DefaultPhase is make chaos's fault phase.
const DefaultPhase = 8 * time.Second

// Rerun is the command that runs a plan's scenario again.
func Rerun(p Plan) string {
	if p.Phase != DefaultPhase {
		return fmt.Sprintf("make chaos SEED=%d PHASE=%v", p.Seed, p.Phase)
	}
	return fmt.Sprintf("make chaos SEED=%d", p.Seed)
}

// mark is a fault's span, for the visualization.
type mark struct {
	what       string
	start, end int64 // ns since the scenario began
}

// save writes a scenario's record under out and returns the directory:
// the plan and its seed, the timeline, each tenant's history (operations,
// member events, ledger), porcupine's visualization of it, and every
// process's log.
func (s *scenario) save(r *Result, out string) string {
	name := fmt.Sprintf("seed-%d", s.plan.Seed)
	if s.opts.Control != NoControl {
		name += "-" + s.opts.Control.String()
	}
	dir := filepath.Join(out, name)
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Logf("save: %v", err)
		return ""
	}
	put := func(rel string, v any) {
		var b []byte
		switch v := v.(type) {
		case string:
			b = []byte(v)
		default:
			b, _ = json.MarshalIndent(v, "", "  ")
		}
		p := filepath.Join(dir, rel)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			s.t.Logf("save: %v", err)
		}
	}
	rerun := Rerun(s.plan)
	if s.opts.Control != NoControl {
		rerun = fmt.Sprintf("make chaos CONTROL=%s SEED=%d", s.opts.Control, s.plan.Seed)
	}
	var v strings.Builder
	for _, x := range r.Violations {
		fmt.Fprintf(&v, "- %v\n", x)
	}
	put("README.md", fmt.Sprintf("# chaos seed %d\n\nRerun: `%s`\n\n%s\n\n## Violations\n\n%s\n## Timeline\n\n```\n%s\n```\n",
		s.plan.Seed, rerun, s.plan, v.String(), strings.Join(r.Timeline, "\n")))
	put("result.json", r)
	for _, tn := range s.tenants {
		ops := tn.work.history()
		final := Op{Client: 99, Kind: "read", Call: int64(time.Since(s.start)), Return: int64(time.Since(s.start)), Status: "no final read"}
		if tn.final != nil {
			final = *tn.final
		}
		put(filepath.Join(tn.name, "history.json"), append(ops, final))
		kvFinal := Op{Client: 99, Kind: "read", Status: "no final read"}
		if tn.kvFinal != nil {
			kvFinal = *tn.kvFinal
		}
		put(filepath.Join(tn.name, "kv-history.json"), append(tn.work.kvHistory(), kvFinal))
		put(filepath.Join(tn.name, "events.json"), tn.events())
		var ledger []LedgerEntry
		for _, e := range s.ledger.Log() {
			if e.Tenant == tn.name {
				ledger = append(ledger, e)
			}
		}
		put(filepath.Join(tn.name, "ledger.json"), ledger)
		_, info := CheckLinearizable(ops, final, time.Minute)
		info.AddAnnotations(s.annotations(tn))
		if err := porcupine.VisualizePath(registers, info, filepath.Join(dir, tn.name, "history.html")); err != nil {
			s.t.Logf("save: porcupine: %v", err)
		}
		if tn.kvFinal != nil {
			_, kvInfo := CheckKVLinearizable(tn.work.kvHistory(), *tn.kvFinal, time.Minute)
			kvInfo.AddAnnotations(s.annotations(tn))
			if err := porcupine.VisualizePath(registers, kvInfo, filepath.Join(dir, tn.name, "kv-history.html")); err != nil {
				s.t.Logf("save: porcupine: %v", err)
			}
		}
		for _, m := range tn.members {
			put(filepath.Join(tn.name, "members", m.id+".log"), strings.Join(m.proc.Lines(), "\n")+"\n--- stderr\n"+m.proc.Stderr())
		}
	}
	for _, sv := range s.cluster.Servers {
		put(filepath.Join("servers", fmt.Sprintf("%d.log", sv.ID)), sv.Log())
	}
	return dir
}

// annotations are the faults and the members' Terms, for porcupine's
// visualization of a tenant's history.
func (s *scenario) annotations(tn *tenant) []porcupine.Annotation {
	var as []porcupine.Annotation
	s.mu.Lock()
	marks := append([]mark(nil), s.marks...)
	s.mu.Unlock()
	for _, m := range marks {
		as = append(as, porcupine.Annotation{Tag: "faults", Start: m.start, End: m.end, Description: m.what,
			BackgroundColor: "#f6c8c8"})
	}
	base := s.start.UnixNano()
	for _, iv := range Intervals(tn.events()) {
		as = append(as, porcupine.Annotation{Tag: "master " + iv.Member, Start: iv.From - base, End: iv.To - base,
			Description: fmt.Sprintf("token %d", iv.Token), BackgroundColor: "#c8e6f6"})
	}
	return as
}
