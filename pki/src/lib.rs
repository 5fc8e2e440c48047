//! Certificates, keys and kubeconfigs for a hosted control plane.
//! Pure: no Kubernetes client, no I/O.
