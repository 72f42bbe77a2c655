/**
 * Notifications: webhooks (HMAC-signed JSON) and syslog/CEF forwarding of alerts, through an outbox in the
 * state database so each (alert, destination) is delivered once across restarts, with retries and a
 * dead-letter list.
 */
export { cefHeader, cefSeverity, cefValue, formatCef, formatSyslog5424 } from './cef.ts';
export {
  type Destination,
  destinationSchema,
  type NotifyConfig,
  notifyConfigSchema,
  type SyslogDestination,
  type WebhookDestination,
} from './config.ts';
export { NOTIFY_MIGRATIONS } from './schema.ts';
export { createSender, DeliveryError, type Outgoing, type Sender, signBody, webhookBody } from './senders.ts';
export {
  createNotifier,
  type DeliveryInfo,
  type DeliveryStatus,
  deliveryId,
  destinationMatches,
  type Notifier,
} from './service.ts';
