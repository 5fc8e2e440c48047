// Command local-volume-provisioner gives the test management cluster its volumes: a directory
// under a base path on the node the scheduler chose, made by this process itself, so a claim is
// bound as soon as the scheduler has picked its node. Rancher's local-path-provisioner (what kind
// ships) makes each directory with a helper pod that it polls once a second: 2.4-3.4 s of every
// hosted control plane's start here. No published module that makes node-local directories
// in-process is available from the Go module proxy (kubevirt's hostpath-provisioner,
// sig-storage-local-static-provisioner, csi-driver-host-path and openebs's localpv are refused), so
// this is a Provisioner for sig-storage-lib-external-provisioner, which does the controller's
// work: watching claims, creating and binding the volumes with retries, the deletion finalizer.
//
// It runs on every node (a DaemonSet) and serves the claims whose selected node is its own.
// It also deletes the volumes rancher's provisioner made under the same base path, so a cluster
// that switched from it loses nothing and leaks nothing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v11/controller"
)

const (
	hostnameLabel = "kubernetes.io/hostname"
	// Rancher's provisioner name: its volumes under our base path are ours to delete.
	rancherProvisioner = "rancher.io/local-path"
)

type provisioner struct {
	node     string // this node's name
	hostname string // its kubernetes.io/hostname label, the key of the volumes' node affinity
	basePath string
}

var _ controller.Qualifier = (*provisioner)(nil)

// ShouldProvision keeps each node's instance to the claims the scheduler placed on it.
func (p *provisioner) ShouldProvision(_ context.Context, claim *v1.PersistentVolumeClaim) bool {
	return claim.Annotations["volume.kubernetes.io/selected-node"] == p.node
}

func (p *provisioner) Provision(_ context.Context, opts controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	claim := opts.PVC
	if opts.SelectedNode == nil {
		return nil, controller.ProvisioningFinished, errors.New("no node was selected: the StorageClass must bind WaitForFirstConsumer")
	}
	if opts.SelectedNode.Name != p.node {
		return nil, controller.ProvisioningNoChange, &controller.IgnoredError{Reason: "the claim is for node " + opts.SelectedNode.Name}
	}
	if claim.Spec.Selector != nil {
		return nil, controller.ProvisioningFinished, errors.New("a claim's selector is not supported")
	}
	for _, mode := range claim.Spec.AccessModes {
		if mode != v1.ReadWriteOnce && mode != v1.ReadWriteOncePod {
			return nil, controller.ProvisioningFinished, fmt.Errorf("access mode %s is not supported: a node-local directory is ReadWriteOnce", mode)
		}
	}
	path := filepath.Join(p.basePath, opts.PVName)
	if err := os.MkdirAll(path, 0o777); err != nil {
		return nil, controller.ProvisioningFinished, fmt.Errorf("making %s: %w", path, err)
	}
	// Any user of the pod may write its volume, as with rancher's provisioner; MkdirAll honours the umask.
	if err := os.Chmod(path, 0o777); err != nil {
		return nil, controller.ProvisioningFinished, fmt.Errorf("opening %s to every user: %w", path, err)
	}
	reclaim := v1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	hostname := hostnameOf(opts.SelectedNode)
	directory := v1.HostPathDirectory
	filesystem := v1.PersistentVolumeFilesystem
	klog.InfoS("provisioned", "volume", opts.PVName, "claim", klog.KObj(claim), "path", path)
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: opts.PVName},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    &filesystem,
			Capacity:                      v1.ResourceList{v1.ResourceStorage: claim.Spec.Resources.Requests[v1.ResourceStorage]},
			PersistentVolumeSource: v1.PersistentVolumeSource{
				HostPath: &v1.HostPathVolumeSource{Path: path, Type: &directory},
			},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{
				NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{{
					Key: hostnameLabel, Operator: v1.NodeSelectorOpIn, Values: []string{hostname},
				}}}},
			}},
		},
	}, controller.ProvisioningFinished, nil
}

// Delete removes a volume's directory if it lies on this node, directly under the base path.
func (p *provisioner) Delete(_ context.Context, pv *v1.PersistentVolume) error {
	if pv.Spec.HostPath == nil {
		return &controller.IgnoredError{Reason: "not a host path volume"}
	}
	if !affineTo(pv, p.hostname) {
		return &controller.IgnoredError{Reason: "the volume is on another node"}
	}
	path := filepath.Clean(pv.Spec.HostPath.Path)
	if filepath.Dir(path) != p.basePath {
		return fmt.Errorf("refusing to delete %s: not directly under %s", path, p.basePath)
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("deleting %s: %w", path, err)
	}
	klog.InfoS("deleted", "volume", pv.Name, "path", path)
	return nil
}

// hostnameOf is a node's kubernetes.io/hostname label, or its name where the label is missing.
func hostnameOf(node *v1.Node) string {
	if hostname := node.Labels[hostnameLabel]; hostname != "" {
		return hostname
	}
	return node.Name
}

func affineTo(pv *v1.PersistentVolume, hostname string) bool {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return false
	}
	for _, term := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, expr := range term.MatchExpressions {
			if expr.Key != hostnameLabel || expr.Operator != v1.NodeSelectorOpIn {
				continue
			}
			for _, value := range expr.Values {
				if value == hostname {
					return true
				}
			}
		}
	}
	return false
}

func main() {
	name := flag.String("provisioner-name", "nestplane.io/local-volume", "the provisioner named by the StorageClass")
	basePath := flag.String("base-path", "", "the directory on the node under which volumes are made (mounted at the same path)")
	klog.InitFlags(nil)
	flag.Parse()
	node := os.Getenv("NODE_NAME")
	if node == "" || *basePath == "" {
		klog.Error("NODE_NAME (from the downward API) and --base-path are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	config, err := rest.InClusterConfig()
	if err != nil {
		klog.ErrorS(err, "in-cluster configuration")
		os.Exit(1)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		klog.ErrorS(err, "client")
		os.Exit(1)
	}
	self, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		klog.ErrorS(err, "reading this node", "node", node)
		os.Exit(1)
	}
	p := &provisioner{node: node, hostname: hostnameOf(self), basePath: filepath.Clean(*basePath)}
	// One instance per node, each serving its own node's claims: no leader to elect.
	controller.NewProvisionController(ctx, client, *name, p,
		controller.LeaderElection(false),
		controller.AdditionalProvisionerNames([]string{rancherProvisioner}),
		controller.AddFinalizer(true),
	).Run(ctx)
}
