# The test OpenStack cloud for NodePool tests (hack/openstack/README.md). Included by the Makefile.
CARGO ?= cargo
NESTPLANE_STATE ?= /var/lib/nestplane
export NESTPLANE_E2E_CLOUDS_YAML ?= $(NESTPLANE_STATE)/openstack/clouds.yaml
export NESTPLANE_E2E_TOXIPROXY ?= http://127.0.0.1:8474

##@ OpenStack
.PHONY: openstack-up openstack-down openstack-status openstack-registry-up test-openstack

# The worker image is uploaded to Glance as `nestplane-worker` (replaced when its content changes).
openstack-up: worker-image ## Start the test OpenStack cloud on this machine (cold ~10 min, warm ~45 s); writes clouds.yaml
	hack/openstack/up.sh

# openstack-up starts the registry too; this is for a cloud started before the registry existed.
openstack-registry-up: ## Start only the test cloud's registry mirror on the gateway (the cloud's network must exist)
	hack/openstack/registry-up.sh

openstack-down: ## Stop every process openstack-up started, by PID; WIPE=1 also deletes the cloud's state
	hack/openstack/down.sh

openstack-status: ## Which of the cloud's processes run, and their memory
	hack/openstack/status.sh

test-openstack: openstack-up ## The OpenStack client's tests against the test cloud (starts it if needed)
	$(CARGO) test -p nestplane-e2e --test openstack_servers --test openstack_faults

# The e2e tests include the OpenStack ones, so `make e2e` (and `make test`) start the cloud first.
e2e: openstack-up
