/**
 * Receiver mode: for each managed source, a Secret with a random token and a Flux Receiver of
 * type `generic-hmac` whose resources name the source (notification-controller admits
 * GitRepository and OCIRepository there: api/v1 reference_types.go), both server-side applied in
 * its namespace and owned by it (so Kubernetes deletes them with it).
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
import { FIELD_MANAGER, GIT_REPOSITORY, OCI_REPOSITORY, RECEIVER, apiVersionOf, isNotFound } from './kube.js';
import type { SourceKind } from './sources.js';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'kasgate';
/** Secret key Flux reads the token from. */
const TOKEN_KEY = 'token';
/** GitRepositories keep the names earlier agents gave them; OCIRepositories get their own prefix. */
const NAME_PREFIX: Record<SourceKind, string> = { GitRepository: 'kasgate-', OCIRepository: 'kasgate-oci-' };
const SOURCE_API_VERSION: Record<SourceKind, string> = {
  GitRepository: apiVersionOf(GIT_REPOSITORY),
  OCIRepository: apiVersionOf(OCI_REPOSITORY),
};
/** Label values and many tools cap names at 63 characters, so stay within that (below Kubernetes' 253). */
const MAX_NAME_LENGTH = 63;
const HASH_LENGTH = 10;

export interface SourceIdentity {
  kind: SourceKind;
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
 * `kasgate-<name>` for a GitRepository, `kasgate-oci-<name>` for an OCIRepository; when that is
 * too long, a truncated prefix plus a hash of the full name, so two long names that share a
 * prefix still get different objects.
 */
export function managedObjectName(sourceName: string, kind: SourceKind = 'GitRepository'): string {
  const plain = NAME_PREFIX[kind] + sourceName;
  if (plain.length <= MAX_NAME_LENGTH) return plain;
  // GitRepositories hash their bare name, as earlier agents did, so that they keep their objects.
  const hashed = kind === 'GitRepository' ? sourceName : plain;
  const hash = createHash('sha256').update(hashed).digest('hex').slice(0, HASH_LENGTH);
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

  /** Applies the Secret and the Receiver for a source; keeps the existing token if there is one. */
  async ensure(source: SourceIdentity): Promise<ManagedReceiver> {
    const name = managedObjectName(source.name, source.kind);
    const token = (await this.existingToken(source, name)) ?? randomBytes(32).toString('base64url');
    const metadata = {
      name,
      namespace: source.namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
      ownerReferences: [ownerReference(source)],
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
        resources: [{ apiVersion: SOURCE_API_VERSION[source.kind], kind: source.kind, name: source.name }],
      },
    } as KubernetesObject);
    return { namespace: source.namespace, name, token };
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

  private async existingToken(source: SourceIdentity, name: string): Promise<string | undefined> {
    const { namespace } = source;
    try {
      const secret = await this.core.readNamespacedSecret({ name, namespace });
      if (secret.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) {
        throw new ForeignObjectError(`Secret ${namespace}/${name} exists and is not managed by kasgate; leaving it alone`);
      }
      // Another source's (a GitRepository `oci-x` and an OCIRepository `x` share a name), or the
      // previous owner's of that name, which Kubernetes is about to collect: not ours to take.
      const owners = secret.metadata?.ownerReferences ?? [];
      if (owners.length > 0 && !owners.some((owner) => owner.uid === source.uid)) {
        throw new ForeignObjectError(`Secret ${namespace}/${name} belongs to another kasgate source; leaving it alone`);
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

function ownerReference(source: SourceIdentity): V1OwnerReference {
  return { apiVersion: SOURCE_API_VERSION[source.kind], kind: source.kind, name: source.name, uid: source.uid };
}
