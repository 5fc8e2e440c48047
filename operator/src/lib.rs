//! nestplane: hosted Kubernetes control planes as pods, OpenStack VMs as workers.
