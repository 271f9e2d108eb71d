package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/rafting/rafting/api"
)

func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("sdk: encode request: %w", err)
	}
	return b, nil
}

func jsonUnmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("sdk: decode answer: %w", err)
	}
	return nil
}

// decodeService decodes a service answer. An instance whose answer has no
// weight gets api.DefaultWeight, so that 0 keeps meaning "never picked".
// Rafting's servers always send the weight, and the check for a missing
// one costs a scan of the answer, not a second decode, when every instance
// has it.
func decodeService(b []byte) (*api.ServiceResponse, error) {
	var r api.ServiceResponse
	if err := jsonUnmarshal(b, &r); err != nil {
		return nil, err
	}
	if bytes.Count(b, []byte(`"weight"`)) >= len(r.Instances) {
		return &r, nil // (a meta entry named "weight" could hide a missing one: not from our servers)
	}
	var weights struct {
		Instances []struct {
			Weight *int `json:"weight"`
		} `json:"instances"`
	}
	if err := json.Unmarshal(b, &weights); err == nil && len(weights.Instances) == len(r.Instances) {
		for i, w := range weights.Instances {
			if w.Weight == nil {
				r.Instances[i].Weight = api.DefaultWeight
			}
		}
	}
	return &r, nil
}
