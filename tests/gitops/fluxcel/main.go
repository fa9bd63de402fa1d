// Evaluates Flux's CEL health checks (healthCheckExprs) on objects with Flux's own
// evaluator (github.com/fluxcd/pkg/runtime/cel), as kustomize-controller does.
// stdin: one JSON document {"exprs": {"current": ..., "failed": ..., "inProgress": ...}, "objects": [...]}
// stdout: one kstatus status per object (Current, InProgress, Failed) or "error: ...".
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/fluxcd/pkg/apis/kustomize"
	"github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sjson "k8s.io/apimachinery/pkg/util/json"
)

type input struct {
	Exprs   kustomize.HealthCheckExpressions `json:"exprs"`
	Objects []map[string]interface{}         `json:"objects"`
}

func main() {
	// Kubernetes' JSON decoding (whole numbers as int64, as the API client gives them to
	// kustomize-controller): status.observedGeneration must be an integer for Flux's check.
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var in input
	if err := k8sjson.Unmarshal(raw, &in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	evaluator, err := cel.NewStatusEvaluator(&in.Exprs)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, obj := range in.Objects {
		result, err := evaluator.Evaluate(context.Background(), &unstructured.Unstructured{Object: obj})
		if err != nil {
			fmt.Printf("error: %v\n", err)
			continue
		}
		fmt.Println(result.Status)
	}
}
