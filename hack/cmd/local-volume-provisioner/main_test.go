package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v11/controller"
)

func options(node string, modes ...v1.PersistentVolumeAccessMode) controller.ProvisionOptions {
	retain := v1.PersistentVolumeReclaimRetain
	return controller.ProvisionOptions{
		StorageClass: &storagev1.StorageClass{ReclaimPolicy: &retain},
		PVName:       "pvc-1",
		PVC: &v1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "ns"},
			Spec: v1.PersistentVolumeClaimSpec{
				AccessModes: modes,
				Resources: v1.VolumeResourceRequirements{
					Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
				},
			},
		},
		SelectedNode: &v1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: node, Labels: map[string]string{hostnameLabel: node + "-host"},
		}},
	}
}

func TestProvisionMakesAWritableDirectoryBoundToTheNode(t *testing.T) {
	base := t.TempDir()
	p := &provisioner{node: "a", hostname: "a-host", basePath: base}
	pv, state, err := p.Provision(context.Background(), options("a", v1.ReadWriteOnce))
	if err != nil || state != controller.ProvisioningFinished {
		t.Fatalf("Provision: %v, %v", state, err)
	}
	path := filepath.Join(base, "pvc-1")
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o777 {
		t.Fatalf("%s: %v, %v", path, info, err)
	}
	if pv.Spec.HostPath.Path != path || !affineTo(pv, "a-host") || affineTo(pv, "b-host") {
		t.Fatalf("volume %+v", pv.Spec)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != v1.PersistentVolumeReclaimRetain {
		t.Fatalf("reclaim policy %s, not the class's", pv.Spec.PersistentVolumeReclaimPolicy)
	}
	if got := pv.Spec.Capacity[v1.ResourceStorage]; got.String() != "1Gi" {
		t.Fatalf("capacity %s", got.String())
	}
}

func TestProvisionRefusesWhatANodeLocalDirectoryCannotBe(t *testing.T) {
	p := &provisioner{node: "a", hostname: "a-host", basePath: t.TempDir()}
	if _, _, err := p.Provision(context.Background(), options("a", v1.ReadWriteMany)); err == nil {
		t.Fatal("ReadWriteMany was provisioned")
	}
	var ignored *controller.IgnoredError
	if _, _, err := p.Provision(context.Background(), options("b", v1.ReadWriteOnce)); !errors.As(err, &ignored) {
		t.Fatalf("another node's claim: %v", err)
	}
}

func TestDeleteRemovesOnlyItsOwnDirectories(t *testing.T) {
	base := t.TempDir()
	p := &provisioner{node: "a", hostname: "a-host", basePath: base}
	pv, _, err := p.Provision(context.Background(), options("a", v1.ReadWriteOnce))
	if err != nil {
		t.Fatal(err)
	}

	// Another node's volume is left to that node's instance.
	other := pv.DeepCopy()
	other.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values = []string{"b-host"}
	var ignored *controller.IgnoredError
	if err := p.Delete(context.Background(), other); !errors.As(err, &ignored) {
		t.Fatalf("another node's volume: %v", err)
	}
	// A path that is not directly under the base path is never removed.
	outside := pv.DeepCopy()
	outside.Spec.HostPath.Path = base + "/../elsewhere"
	if err := p.Delete(context.Background(), outside); err == nil {
		t.Fatal("a path outside the base path was accepted")
	}
	if _, err := os.Stat(pv.Spec.HostPath.Path); err != nil {
		t.Fatalf("the volume went with a refused delete: %v", err)
	}

	if err := p.Delete(context.Background(), pv); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pv.Spec.HostPath.Path); !os.IsNotExist(err) {
		t.Fatalf("%s is still there: %v", pv.Spec.HostPath.Path, err)
	}
}
