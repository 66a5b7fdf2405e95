/** Types of authorization.cjs, for the tests that generate NATS configurations with it. */
export interface DeviceUser {
  name: string;
  id: string;
  /** `$VARIABLE` (read from the server's environment) or a literal. */
  password: string;
  /** The libraries it may use (default: any). */
  libraries?: string[];
}
export interface DevicePermissions {
  publish: string[];
  subscribe: string[];
  allowResponses: boolean;
}
/** The library of docker-compose.yml. */
export const LIBRARY: string;
export const DEVICES: DeviceUser[];
export const ADMIN: { name: string; password: string };
export function devicePermissions(deviceId: string, libraries?: string[]): DevicePermissions;
export function authorizationBlock(devices: DeviceUser[], admin?: { name: string; password: string } | null): string;
export function natsConf(devices?: DeviceUser[], admin?: { name: string; password: string } | null): string;
