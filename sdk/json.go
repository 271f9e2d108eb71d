package sdk

import (
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
// Answers from Rafting's servers take fastService's path; anything else
// is decoded with encoding/json.
func decodeService(b []byte, k *known) (*api.ServiceResponse, error) {
	if r, ok := fastService(b, k); ok {
		return r, nil
	}
	if k != nil {
		k.forget()
	}
	return slowService(b)
}

// slowService is decodeService through encoding/json.
func slowService(b []byte) (*api.ServiceResponse, error) {
	var r api.ServiceResponse
	if err := jsonUnmarshal(b, &r); err != nil {
		return nil, err
	}
	if len(r.Instances) == 0 {
		return &r, nil
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
