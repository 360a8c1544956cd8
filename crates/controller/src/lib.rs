//! EdgeDeployment CRD, module-to-Kubernetes translation and the controller.
