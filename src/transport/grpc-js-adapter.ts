/**
 * grpc-js speaks protobuf-es v2 messages through this adapter: a grpc-js ServiceDefinition
 * built from a generated DescService (paths, streaming kinds, (de)serializers), and a typed
 * generic client on top of it. Serialization copies once (toBinary); the Buffer handed to
 * grpc-js is a view on that copy, and fromBinary returns bytes fields as views on the received
 * Buffer, so a 1 MiB body chunk is not copied again here.
 */
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

type AnyMethodDefinition = grpc.MethodDefinition<unknown, unknown>;

const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

function methodDefinition(service: DescService, m: DescMethod): AnyMethodDefinition {
  const input: DescMessage = m.input;
  const output: DescMessage = m.output;
  return {
    path: `/${service.typeName}/${m.name}`,
    originalName: m.localName,
    requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
    responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
    // create() returns its argument unchanged when it already is a message of that type.
    requestSerialize: (v: unknown) => asBuffer(toBinary(input, create(input, v as MessageInitShape<DescMessage>))),
    requestDeserialize: (b: Buffer) => fromBinary(input, b),
    responseSerialize: (v: unknown) => asBuffer(toBinary(output, create(output, v as MessageInitShape<DescMessage>))),
    responseDeserialize: (b: Buffer) => fromBinary(output, b),
  };
}

/** A grpc-js ServiceDefinition for `service`, keyed by each method's localName (e.g. "readBodies"). */
export function grpcServiceDefinition(service: DescService): grpc.ServiceDefinition {
  const def: Record<string, AnyMethodDefinition> = {};
  for (const m of service.methods) def[m.localName] = methodDefinition(service, m);
  return def;
}

type UnaryFn<I extends DescMessage, O extends DescMessage> = {
  (req: MessageInitShape<I>, callback: grpc.requestCallback<MessageShape<O>>): grpc.ClientUnaryCall;
  (req: MessageInitShape<I>, metadata: grpc.Metadata, callback: grpc.requestCallback<MessageShape<O>>): grpc.ClientUnaryCall;
  (req: MessageInitShape<I>, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, callback: grpc.requestCallback<MessageShape<O>>): grpc.ClientUnaryCall;
};
type ServerStreamFn<I extends DescMessage, O extends DescMessage> = (
  req: MessageInitShape<I>,
  metadata?: grpc.Metadata,
  options?: Partial<grpc.CallOptions>,
) => grpc.ClientReadableStream<MessageShape<O>>;
type ClientStreamFn<I extends DescMessage, O extends DescMessage> = (
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: grpc.requestCallback<MessageShape<O>>,
) => grpc.ClientWritableStream<MessageInitShape<I>>;
type BidiFn<I extends DescMessage, O extends DescMessage> = (
  metadata?: grpc.Metadata,
  options?: Partial<grpc.CallOptions>,
) => grpc.ClientDuplexStream<MessageInitShape<I>, MessageShape<O>>;

type MethodFn<M> = M extends { methodKind: infer K; input: infer I extends DescMessage; output: infer O extends DescMessage }
  ? K extends "unary"
    ? UnaryFn<I, O>
    : K extends "server_streaming"
      ? ServerStreamFn<I, O>
      : K extends "client_streaming"
        ? ClientStreamFn<I, O>
        : BidiFn<I, O>
  : never;

/** A grpc-js client whose methods are typed from the generated service (localName keys). */
export type GrpcJsClient<S extends DescService> = grpc.Client & { [K in keyof S["method"]]: MethodFn<S["method"][K]> };

/**
 * A grpc-js generic client for `service` on its own channel to `target` ("host:port").
 * For peers use peer-channel.ts, which supplies the credentials and tuned channel options.
 */
export function createGrpcJsClient<S extends DescService>(
  service: S,
  target: string,
  creds: grpc.ChannelCredentials,
  options: grpc.ChannelOptions = {},
): GrpcJsClient<S> {
  const Ctor = grpc.makeGenericClientConstructor(grpcServiceDefinition(service), service.typeName);
  return new Ctor(target, creds, options) as unknown as GrpcJsClient<S>;
}
