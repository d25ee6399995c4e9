// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import "./IERC20.sol";

/// A Curve stableswap pool's exchange() with its real TokenExchange event and coins(uint256);
/// the invariant is left out: the test names both amounts.
contract CurvePool {
    event TokenExchange(address indexed buyer, int128 sold_id, uint256 tokens_sold, int128 bought_id, uint256 tokens_bought);

    address[] private _coins;

    constructor(address[] memory coins_) {
        _coins = coins_;
    }

    function coins(uint256 i) external view returns (address) {
        return _coins[i];
    }

    function exchange(int128 i, int128 j, uint256 dx, uint256 dy) external returns (uint256) {
        IERC20(_coins[uint128(i)]).transferFrom(msg.sender, address(this), dx);
        IERC20(_coins[uint128(j)]).transfer(msg.sender, dy);
        emit TokenExchange(msg.sender, i, dx, j, dy);
        return dy;
    }
}
