/**
 * What a gpu-worker's own environment holds that no rank may see: the Redis URL, the worker's cloud
 * credentials and their config paths, the Kubernetes identity, API keys and the worker's own
 * INTERFLEET_* config. Tests put these in a worker's environment and check a rank's has none.
 */
export const workerSecrets: Readonly<Record<string, string>> = {
  REDIS_URL: 'redis://:s3cret@redis.internal:6379',
  REDIS_PASSWORD: 's3cret',
  GOOGLE_APPLICATION_CREDENTIALS: '/var/secrets/google/key.json',
  GOOGLE_CLOUD_PROJECT: 'acme-prod',
  OCI_CONFIG_FILE: '/home/worker/.oci/config',
  OCI_CLI_KEY_FILE: '/home/worker/.oci/key.pem',
  OCI_RESOURCE_PRINCIPAL_VERSION: '2.2',
  AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
  AWS_SECRET_ACCESS_KEY: 'aws-secret',
  KUBECONFIG: '/home/worker/.kube/config',
  KUBERNETES_SERVICE_HOST: '10.96.0.1',
  INTERFLEET_API_KEYS: 'sk-fleet-admin',
  INTERFLEET_API_KEY: 'sk-fleet-worker',
  INTERFLEET_CONFIG: '/etc/interfleet/config.yaml',
  INTERFLEET_PREFIX: 'prod',
  OPENAI_API_KEY: 'sk-upstream',
  NVIDIA_API_KEY: 'nvapi-secret',
  HF_TOKEN: 'hf_secret',
  NODE_OPTIONS: '--max-old-space-size=8192',
  HOME: '/home/worker',
  TMPDIR: '/var/tmp/worker',
  USER: 'worker',
};

/** The names above that a rank's environment must not hold, with the worker's value (HOME, TMPDIR: the rank's own). */
export const forbiddenInRank = Object.keys(workerSecrets).filter((n) => n !== 'HOME' && n !== 'TMPDIR');
