/**
 * For each GitRepository on our GitLab: a Secret with a random token and a Flux Receiver of type
 * `generic-hmac` pointing at the GitRepository, both server-side applied in its namespace and
 * owned by it (so Kubernetes deletes them with it).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  PatchStrategy,
  type KubernetesObject,
  type V1OwnerReference,
} from '@kubernetes/client-node';
import { GIT_REPOSITORY, RECEIVER, isNotFound } from './kube.js';

export const FIELD_MANAGER = 'kasgate-agent';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'kasgate';
/** Secret key Flux reads the token from. */
const TOKEN_KEY = 'token';
const NAME_PREFIX = 'kasgate-';
/** Label values and many tools cap names at 63 characters, so stay within that (below Kubernetes' 253). */
const MAX_NAME_LENGTH = 63;
const HASH_LENGTH = 10;

export interface GitRepositoryIdentity {
  namespace: string;
  name: string;
  uid: string;
}

export interface ManagedReceiver {
  namespace: string;
  /** Name of both the Receiver and its Secret. */
  name: string;
  /** The HMAC key and Receiver token. Never log it. */
  token: string;
}

/**
 * `kasgate-<name>`; when that is too long, a truncated prefix plus a hash of the full name, so
 * two long names that share a prefix still get different objects.
 */
export function managedObjectName(gitRepositoryName: string): string {
  const plain = NAME_PREFIX + gitRepositoryName;
  if (plain.length <= MAX_NAME_LENGTH) return plain;
  const hash = createHash('sha256').update(gitRepositoryName).digest('hex').slice(0, HASH_LENGTH);
  // Each part of a DNS name must end alphanumeric, so no `-` or `.` right before the hash's `-`.
  const head = plain.slice(0, MAX_NAME_LENGTH - HASH_LENGTH - 1).replace(/[-.]+$/, '');
  return `${head}-${hash}`;
}

export class ForeignObjectError extends Error {
  override name = 'ForeignObjectError';
}

export class ReceiverManager {
  private readonly objects: KubernetesObjectApi;
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;

  constructor(clients: { objects: KubernetesObjectApi; core: CoreV1Api; custom: CustomObjectsApi }) {
    this.objects = clients.objects;
    this.core = clients.core;
    this.custom = clients.custom;
  }

  /** Applies the Secret and the Receiver for a GitRepository; keeps the existing token if there is one. */
  async ensure(repo: GitRepositoryIdentity): Promise<ManagedReceiver> {
    const name = managedObjectName(repo.name);
    const token = (await this.existingToken(repo.namespace, name)) ?? randomBytes(32).toString('base64url');
    const metadata = {
      name,
      namespace: repo.namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
      ownerReferences: [ownerReference(repo)],
    };
    await this.apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata,
      type: 'Opaque',
      data: { [TOKEN_KEY]: Buffer.from(token).toString('base64') },
    } as KubernetesObject);
    await this.apply({
      apiVersion: `${RECEIVER.group}/${RECEIVER.version}`,
      kind: RECEIVER.kind,
      metadata,
      spec: {
        type: 'generic-hmac',
        secretRef: { name },
        resources: [{ apiVersion: `${GIT_REPOSITORY.group}/${GIT_REPOSITORY.version}`, kind: GIT_REPOSITORY.kind, name: repo.name }],
      },
    } as KubernetesObject);
    return { namespace: repo.namespace, name, token };
  }

  /** The Receiver's `status.webhookPath`, or undefined while Flux has not set it yet. */
  async webhookPath(receiver: ManagedReceiver): Promise<string | undefined> {
    const object = (await this.custom.getNamespacedCustomObject({
      group: RECEIVER.group,
      version: RECEIVER.version,
      namespace: receiver.namespace,
      plural: RECEIVER.plural,
      name: receiver.name,
    })) as { status?: { webhookPath?: unknown } };
    const path = object.status?.webhookPath;
    return typeof path === 'string' && path.startsWith('/') ? path : undefined;
  }

  private async existingToken(namespace: string, name: string): Promise<string | undefined> {
    try {
      const secret = await this.core.readNamespacedSecret({ name, namespace });
      if (secret.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) {
        throw new ForeignObjectError(`Secret ${namespace}/${name} exists and is not managed by kasgate; leaving it alone`);
      }
      const encoded = secret.data?.[TOKEN_KEY];
      const token = encoded ? Buffer.from(encoded, 'base64').toString('utf8') : '';
      return token === '' ? undefined : token;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async apply(object: KubernetesObject): Promise<void> {
    // No force: a field someone else owns (a hand-made object of the same name) is a conflict we report, not overwrite.
    await this.objects.patch(object, undefined, undefined, FIELD_MANAGER, false, PatchStrategy.ServerSideApply);
  }
}

function ownerReference(repo: GitRepositoryIdentity): V1OwnerReference {
  return {
    apiVersion: `${GIT_REPOSITORY.group}/${GIT_REPOSITORY.version}`,
    kind: GIT_REPOSITORY.kind,
    name: repo.name,
    uid: repo.uid,
  };
}
