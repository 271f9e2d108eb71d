package balancer

// Func is a Policy made of a function, the way http.HandlerFunc is a
// Handler: Func(f) picks with f.
//
// f is called on every pick with the endpoints of positive weight of the
// last Update, never an empty list (the Picker answers ErrNoEndpoints
// itself then), and its result and error are returned as they are. Like any
// Picker, f must be safe for concurrent use, must not block, should not
// allocate, and must not modify the slice, which every pick shares. Picks
// made through a Func are not tracked: its Done is the zero Done, and
// ejection does not apply.
type Func func(endpoints []Endpoint) (Endpoint, error)

// Build returns a Picker that calls f with a copy of the positive-weight
// endpoints of eps.
func (f Func) Build(eps []Endpoint) Picker {
	var live []Endpoint
	for _, e := range eps {
		if e.Weight > 0 {
			live = append(live, e)
		}
	}
	if len(live) == 0 {
		return none{ErrNoEndpoints}
	}
	return &funcPicker{f: f, eps: live}
}

type funcPicker struct {
	f   Func
	eps []Endpoint
}

func (p *funcPicker) Pick() (Endpoint, Done, error) {
	e, err := p.f(p.eps)
	return e, Done{}, err
}
