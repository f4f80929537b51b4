/**
 * The autoscaling cooldown survives a coordinator restart: when a deployment was last scaled
 * (by the autoscaler or by hand), stored with the deployment.
 */
export const version = 2;
export const name = 'deployment-last-scaled';

export const sql = `
ALTER TABLE deployments ADD COLUMN last_scaled_at timestamptz;
`;
